"""Every input a request can carry, generated, on every route: no answer is a 5xx or an error
that is not JSON, and a request that is refused records nothing.

The requests come from fuzz_requests.py: for each route, first every known edge value in each
input in turn, then EXAMPLES generated requests. Records exist (seeded: workflows 1-5, task 1),
so generated ids reach real ones and commands run. The app is the factory's, with auth on.

"Records nothing": every event appended while a refused request was handled must be the
engine's own (a workflow started by an earlier, accepted request runs on by itself).
Bounded: a few seconds per route, no example database, no shrinking.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from orchestrator.http.app import runtime_of
from orchestrator.settings import Settings
from tests.http.fuzz_requests import ROUTES, TOKEN, Route, edge_cases, requests
from tests.http.raw_asgi import RawAnswer, call

#: Generated requests per route (after its edge cases).
EXAMPLES = 120


# The app -----------------------------------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Auth on (most generated requests carry the token), engine steps instant."""
    return dataclasses.replace(settings, api_tokens=(TOKEN,))


@pytest.fixture
def seeded(client: TestClient) -> Iterator[TestClient]:
    """Workflows 1-2 finished, 3 waiting in INIT, 4 created, 5 failed; task 1 done."""
    for path, body in [
        ("/workflow/start", {"name": "auto-1"}),
        ("/workflow/start", {"name": "auto-2"}),
        ("/workflow/start", {"name": "manual", "auto_start": False}),
        ("/workflows", {"name": "created"}),
        ("/workflow/start", {"name": "failing", "config": {"simulate_failure": True}}),
        ("/tasks", {"name": "nap", "task_type": "sleep", "config": {"duration": 0}}),
    ]:
        answer = client.post(path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 201, answer.text
    yield client


async def answer_and_check(app: Starlette, request: dict[str, Any]) -> RawAnswer:
    """Send `request`; if it was refused, check that it appended nothing of its own."""
    store = runtime_of(app).store
    before = await store.head_position()
    # An event stream is read briefly: long enough for its first page of the log.
    answer = await call(app, **request, stream_read=0.01)
    if answer.status >= 400:
        appended = await store.read_all(before, 1000)
        own = [e for e in appended if e.metadata.get("actor") != "engine"]
        assert own == [], f"refused with {answer.status}, yet recorded {own}"
    return answer


def check(answer: RawAnswer, request: dict[str, Any]) -> None:
    """No 5xx, no exception escaping the app, and every error a JSON {"error", "detail"}."""
    shown = f"{request}: {answer.status} {answer.body[:300]!r}"
    assert answer.raised is None, f"{shown} raised {answer.raised!r}"
    assert 200 <= answer.status < 500, shown
    if answer.status >= 400 and not (request["method"] == "HEAD" and not answer.body):
        assert answer.header("content-type") == "application/json", shown
        body = answer.json()
        assert isinstance(body, dict) and set(body) == {"error", "detail"}, shown
        assert isinstance(body["error"], str) and isinstance(body["detail"], str), shown


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_generated_inputs_never_get_a_server_error_and_refusals_record_nothing(
    seeded: TestClient, app: Starlette, settings: Settings, route: Route
) -> None:
    portal = seeded.portal
    assert portal is not None
    statuses: list[int] = []
    edges = edge_cases(route, settings.allowed_hosts)
    for request in edges:
        answer = portal.call(answer_and_check, app, request)
        check(answer, request)
        statuses.append(answer.status)

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(request=requests(route, settings.allowed_hosts))
    def one_request(request: dict[str, Any]) -> None:
        answer = portal.call(answer_and_check, app, request)
        check(answer, request)
        statuses.append(answer.status)

    one_request()

    assert len(statuses) == len(edges) + EXAMPLES
    # Some requests got past the guards to the handler (which answered, or refused the state).
    reached = [s for s in statuses if s < 400 or s in (409, 422)]
    assert reached, f"nothing got through to {route}: {set(statuses)}"
