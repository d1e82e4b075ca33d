"""A schemathesis property run against /openapi.json: no generated request gets a 5xx, and every
answer conforms to the document (status code, content type, headers and body schema).

Each operation gets a fresh app from the factory (in-memory store, instant tasks), seeded with a
few workflows and a task so that positive cases with small ids reach real records, not only 404s.
Schemathesis serves the app on its own event loop and runs the app's lifespan there; the `schema`
fixture ends that lifespan after the app has quiesced. The run is bounded: few examples per
operation, derandomized, no shrinking, no example database.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import response_schema_conformance
from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send

from orchestrator.http.app import runtime_of
from orchestrator.http.dispatch import MAX_JSON_DEPTH
from orchestrator.http.endpoint_table import ENDPOINTS
from orchestrator.http.openapi import openapi_document
from orchestrator.runtime import Runtime

#: Generated cases per operation and generation mode.
MAX_EXAMPLES = 20
#: Generated cases for an operation that answers with an endless event stream.
STREAM_EXAMPLES = 8
#: How long one call reads an event stream before it is cut.
STREAM_READ = 0.25
#: Ids that `seed` creates: workflows 1-4, task 1.
SEEDED_IDS = (1, 2, 3, 4)
#: How long the app may take to quiesce before its lifespan ends.
DEADLINE = 5.0

DOCUMENT: dict[str, Any] = openapi_document(ENDPOINTS)
POSITIVE = schemathesis.GenerationMode.POSITIVE
NEGATIVE = schemathesis.GenerationMode.NEGATIVE


def generation_runs() -> list[Any]:
    """(method, path, mode) for every documented operation: positive cases for all, negative
    cases for those with parameters or a body (the others have nothing to get wrong)."""
    runs: list[Any] = []
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            modes = [POSITIVE]
            if "parameters" in operation or "requestBody" in operation:
                modes.append(NEGATIVE)
            for mode in modes:
                label = f"{method.upper()} {path} {mode.value}"
                runs.append(pytest.param(method.upper(), path, mode, id=label))
    return runs


def integer_fields() -> frozenset[str]:
    """Names of the request body properties and query parameters the document types as integers."""
    schemas: list[tuple[str, Any]] = []
    for component in DOCUMENT["components"]["schemas"].values():
        schemas += list(component.get("properties", {}).items())
    for operations in DOCUMENT["paths"].values():
        for operation in operations.values():
            schemas += [(p["name"], p["schema"]) for p in operation.get("parameters", [])]
    return frozenset(name for name, schema in schemas if _allows_integer(schema))


def _allows_integer(schema: Any) -> bool:
    alternatives = schema.get("anyOf", [schema]) if isinstance(schema, dict) else []
    return any(alternative.get("type") == "integer" for alternative in alternatives)


INTEGER_FIELDS = integer_fields()


def goes_where_the_schema_cannot_say_no(case: schemathesis.Case[Any]) -> bool:
    """True when positive data the document allows meets a limit it states only in words.

    - `3.0` for an integer field: JSON Schema counts it as an integer, msgspec (rightly, for
      ids) refuses a float where an int is declared.
    - free-form config with an integer past 64 bits or nested deeper than MAX_JSON_DEPTH: the
      Config schema says so in its description, not as keywords a generator can obey.
    - an `http_request` task: it is refused until HTTP_TASK_ALLOWED_HOSTS lists the hosts of
      its config's url, a setting the document cannot express.

    The server's 422 is the intended answer in both cases (the bad-input tests assert it); such
    cases are left out of the positive run so that it checks everything else.
    """
    values: dict[str, Any] = {}
    if isinstance(case.body, dict):
        values.update(case.body)
    values.update(case.query or {})
    if values.get("task_type") == "http_request":
        return True
    return any(
        (isinstance(value, float) and value.is_integer() and name in INTEGER_FIELDS)
        or not fits_the_config_limits(value, 0)
        for name, value in values.items()
    )


def fits_the_config_limits(value: Any, depth: int) -> bool:
    """Integers within 64 bits and nesting within MAX_JSON_DEPTH, as endpoints.py enforces."""
    if depth > MAX_JSON_DEPTH:
        return False
    if isinstance(value, int) and not isinstance(value, bool):
        return -(2**63) <= value < 2**63
    if isinstance(value, dict):
        return all(fits_the_config_limits(item, depth + 1) for item in value.values())
    if isinstance(value, list):
        return all(fits_the_config_limits(item, depth + 1) for item in value)
    return True


class ServedLikeAServer:
    """The app as a server runs it: its lifespan quiesces before shutting down, and an error the
    app raises after sending its 500 stays in the app's log instead of reaching the client.

    Starlette re-raises after answering 500 so that a server can log the error; schemathesis would
    turn that into a traceback, while the checks should see (and report) the 500 answer itself.
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one connection or the lifespan."""
        if scope["type"] == "lifespan":
            await self.app(scope, self._quiescing_before_shutdown(receive), send)
            return
        responded = False

        async def send_noting_the_start(message: Message) -> None:
            nonlocal responded
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_noting_the_start)
        except Exception:
            if not responded:
                raise

    def _quiescing_before_shutdown(self, receive: Receive) -> Callable[[], Awaitable[Message]]:
        async def receive_message() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await quiesce(runtime_of(self.app))
            return message

        return receive_message


async def quiesce(runtime: Runtime) -> None:
    """Let every driven workflow finish and the projector apply the whole log (see conftest)."""
    async with asyncio.timeout(DEADLINE):
        await runtime.coordinator.wait_idle()
        await runtime.projector.wait_for(await runtime.store.head_position())


def seed(app: ServedLikeAServer) -> None:
    """Workflows 1-2 run to the end, 3 waits in INIT for `next`, 4 is created; task 1 computes."""
    requests: list[tuple[str, dict[str, Any]]] = [
        ("/workflow/start", {"name": "seed-auto-1"}),
        ("/workflow/start", {"name": "seed-auto-2"}),
        ("/workflow/start", {"name": "seed-manual", "auto_start": False}),
        ("/workflows", {"name": "seed-created"}),
        ("/tasks", {"name": "seed-task", "task_type": "compute", "workflow_id": 1}),
    ]
    # The same object that schemathesis serves, so the request reaches its running lifespan;
    # the cast bridges Starlette's ASGI aliases and schemathesis' narrower (dict) ones.
    with asgi.get_client(cast("asgi.ASGIApp", app)) as client:
        for path, body in requests:
            response = client.post(path, json=body)
            assert response.status_code == 201, response.text


def cases_on_seeded_records(
    operation: schemathesis.APIOperation[Any, Any, Any, Any],
) -> st.SearchStrategy[Any]:
    """Positive cases whose path ids name seeded records (generated ids rarely do)."""
    path_names = re.findall(r"{(\w+)}", operation.path)
    if not path_names:
        return st.nothing()
    return st.sampled_from(SEEDED_IDS).flatmap(
        lambda seeded: operation.as_strategy(
            generation_mode=POSITIVE, path_parameters=dict.fromkeys(path_names, seeded)
        )
    )


@pytest.fixture
def schema(app: Starlette) -> Iterator[schemathesis.BaseSchema]:
    """The document loaded through the running app, which has been seeded."""
    served = ServedLikeAServer(app)
    try:
        loaded = schemathesis.openapi.from_asgi("/openapi.json", served)
        seed(served)
        yield loaded
    finally:
        asgi.shutdown_lifespans()


@pytest.mark.parametrize(("method", "path", "mode"), generation_runs())
def test_generated_requests_get_documented_answers_and_never_a_server_error(
    schema: schemathesis.BaseSchema, method: str, path: str, mode: schemathesis.GenerationMode
) -> None:
    operation = schema[path][method]
    stream = event_stream_media(path, method)
    streams = stream is not None
    statuses: list[int] = []
    strategy = operation.as_strategy(generation_mode=mode)
    if mode is POSITIVE:
        strategy = st.one_of(strategy, cases_on_seeded_records(operation)).filter(
            lambda case: not goes_where_the_schema_cannot_say_no(case)
        )
    # An event stream never ends by itself: each call reads it for STREAM_READ seconds (or up to
    # schemathesis' event limit), so fewer examples keep the run short. Without `itemSchema`,
    # schemathesis reads an Open API 3.1 `schema` of text/event-stream as the schema of each
    # event, while this document means the stream's text: that check is left out until the
    # document describes each event (test_http_openapi.py checks the frames against EventOut).
    excluded = []
    if stream is not None and "itemSchema" not in stream:
        excluded.append(response_schema_conformance)

    @hypothesis.settings(
        max_examples=STREAM_EXAMPLES if streams else MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        # No shrinking: a failure is reported as found, which keeps a failing run short too.
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=[hypothesis.HealthCheck.too_slow],
    )
    @hypothesis.given(case=strategy)
    def answer_conforms(case: schemathesis.Case[Any]) -> None:
        if mode is POSITIVE:
            key_of_its_own(case)
        response = case.call_and_validate(
            excluded_checks=excluded, timeout=STREAM_READ if streams else DEADLINE
        )
        statuses.append(response.status_code)

    answer_conforms()

    assert statuses, f"no request was made for {method} {path}"
    assert max(statuses) < 500


_case_numbers = itertools.count(1)


def key_of_its_own(case: schemathesis.Case[Any]) -> None:
    """Make a generated Idempotency-Key unique to its case.

    Generators reuse values across cases, and a key reused for a different request is rightly
    422 (the idempotency tests assert it), which a positive case must not meet.
    """
    headers: Any = case.headers  # a case-insensitive dict
    key = headers.get("Idempotency-Key") if headers is not None else None
    if isinstance(key, str):
        headers["Idempotency-Key"] = f"{next(_case_numbers)}-{key}"[:255].rstrip(" ")


def event_stream_media(path: str, method: str) -> dict[str, Any] | None:
    """The text/event-stream media type object of the operation's success answer, if any."""
    for status, answer in DOCUMENT["paths"][path][method.lower()]["responses"].items():
        if status.startswith("2") and "text/event-stream" in answer.get("content", {}):
            media: dict[str, Any] = answer["content"]["text/event-stream"]
            return media
    return None
