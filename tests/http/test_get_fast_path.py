"""GET /workflow/{id} answered before the middleware stack (http/fast_reads.py).

Each request is sent twice on a real SQLite file: to the app (where the fast path goes first)
and to the whole stack alone (Starlette's own `__call__`, which never looks at the fast path).
The two answers must be the same, status, headers and body; a spy on the fast path says whether
it answered, so a case meant for it cannot pass by falling through, nor a refusal by skipping a
check. One test compares the answers as a real server sends them, byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.http import workflow_routes
from orchestrator.http.app import create_app, runtime_of
from orchestrator.http.connections import server_options
from orchestrator.http.endpoint_table import ENDPOINTS, WORKFLOW_PATH
from orchestrator.http.fast_reads import FastWorkflowReads, OrchestratorApp, fast_reads_for
from orchestrator.http.security import refusals
from orchestrator.settings import Settings
from tests.http.raw_asgi import RawAnswer, call

MAX_HEADER_BYTES = 2048
MAX_BODY_BYTES = 4096
TOKEN = "fast-path-token-0123456789"
LISTED_ORIGIN = "https://dashboard.example"
HOST = (b"host", b"testserver")
#: Stands for the id of a workflow the test created, in a case's path.
ID = "{id}"
DELETED = "{deleted}"
#: Stands for that id with every digit percent-encoded.
ENCODED = "{encoded}"


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """A SQLite file, and small limits so the cases reach them."""
    return dataclasses.replace(
        settings,
        database_url=f"sqlite:///{tmp_path / 'reads.db'}",
        max_header_bytes=MAX_HEADER_BYTES,
        max_body_bytes=MAX_BODY_BYTES,
    )


def fast_reads_of(app: Starlette) -> FastWorkflowReads:
    """The app's fast path (the factory always installs it)."""
    assert isinstance(app, OrchestratorApp)
    assert app.fast_reads is not None
    return app.fast_reads


@pytest.fixture
def taken(app: Starlette, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the fast path answered, for each request the app was sent."""
    fast = fast_reads_of(app)
    answered = fast.answered
    seen: list[bool] = []

    async def spy(scope: Scope, receive: Receive, send: Send) -> bool:
        result = await answered(scope, receive, send)
        seen.append(result)
        return result

    monkeypatch.setattr(fast, "answered", spy)
    return seen


def whole_stack(app: Starlette) -> ASGIApp:
    """The app as it was without the fast path: its middleware stack, routes and handlers."""

    async def stack(scope: Scope, receive: Receive, send: Send) -> None:
        await Starlette.__call__(app, scope, receive, send)

    return stack


@dataclasses.dataclass(frozen=True)
class Case:
    """One request, as raw as a server would hand it over."""

    method: str
    path: str
    query: bytes = b""
    headers: Sequence[tuple[bytes, bytes]] = (HOST,)
    body: bytes = b""


@pytest.fixture
def ids(client: TestClient, settle: Callable[[int], dict[str, Any]]) -> dict[str, int]:
    """A finished workflow's id, and a deleted one's."""
    found = {}
    for name in (ID, DELETED):
        response = client.post("/workflow/start", json={"name": f"read {name}"})
        assert response.status_code == 201
        found[name] = settle(response.json()["workflow_id"])["workflow_id"]
    assert client.delete(f"/workflow/{found[DELETED]}").status_code == 204
    return found


def both(
    client: TestClient, app: Starlette, case: Case, ids: dict[str, int]
) -> tuple[RawAnswer, RawAnswer]:
    """The app's answer to `case`, then the whole stack's."""
    encoded = "".join(f"%{ord(digit):02X}" for digit in str(ids[ID]))
    path = case.path.replace(ID, str(ids[ID])).replace(DELETED, str(ids[DELETED]))
    path = path.replace(ENCODED, encoded)
    answers = []
    for target in (app, whole_stack(app)):
        send = functools.partial(
            call,
            target,
            case.method,
            path.encode(),
            query=case.query,
            headers=case.headers,
            body_chunks=(case.body,),
        )
        assert client.portal is not None
        answers.append(client.portal.call(send))
    return answers[0], answers[1]


def assert_same(fast: RawAnswer, whole: RawAnswer) -> None:
    """Same status, the same headers in the same order, the same body; nothing raised."""
    assert fast.raised is None
    assert whole.raised is None
    assert (fast.status, fast.headers, fast.body) == (whole.status, whole.headers, whole.body)


TAKEN = {
    "plain": Case("GET", "/workflow/{id}"),
    "head": Case("HEAD", "/workflow/{id}"),
    "trailing slash": Case("GET", "/workflow/{id}/"),
    "trailing slashes": Case("GET", "/workflow/{id}//"),
    "a percent-encoded id": Case("GET", "/workflow/{encoded}"),
    "an IP literal host": Case("GET", "/workflow/{id}", headers=[(b"host", b"127.0.0.1:8000")]),
    # A read changes nothing: another origin's page may send it (and cannot read the answer
    # without CORS), as through the stack.
    "another origin's page": Case(
        "GET",
        "/workflow/{id}",
        headers=[HOST, (b"origin", b"http://evil.example"), (b"sec-fetch-site", b"cross-site")],
    ),
    "a JSON content type without a body": Case(
        "GET", "/workflow/{id}", headers=[HOST, (b"content-type", b"text/plain")]
    ),
    "headers just within the limit": Case(
        "GET", "/workflow/{id}", headers=[HOST, (b"x-padding", b"x" * (MAX_HEADER_BYTES - 100))]
    ),
}


@pytest.mark.parametrize("case", TAKEN.values(), ids=TAKEN.keys())
def test_a_plain_read_is_answered_by_the_fast_path_as_the_whole_stack_answers_it(
    client: TestClient, app: Starlette, ids: dict[str, int], taken: list[bool], case: Case
) -> None:
    fast, whole = both(client, app, case, ids)

    assert taken == [True]
    assert_same(fast, whole)
    assert fast.status == 200
    assert fast.headers == [
        (b"content-length", str(len(whole.body)).encode()),
        (b"content-type", b"application/json"),
    ]
    read = msgspec.json.decode(fast.body)
    assert (read["workflow_id"], read["status"]) == (ids[ID], "COMPLETE")


FALLING_THROUGH = {
    "unknown id": (Case("GET", "/workflow/987654"), 404),
    "deleted workflow": (Case("GET", "/workflow/{deleted}"), 404),
    "id zero": (Case("GET", "/workflow/0"), 422),
    "leading zero": (Case("GET", "/workflow/0{id}"), 422),
    "negative id": (Case("GET", "/workflow/-{id}"), 422),
    "id past 2**63-1": (Case("GET", "/workflow/9223372036854775808"), 422),
    "not a number": (Case("GET", "/workflow/abc"), 422),
    "non-ASCII digits": (Case("GET", "/workflow/%D9%A3"), 422),
    "longer path": (Case("GET", "/workflow/{id}/events"), 200),
    "an empty segment": (Case("GET", "/workflow//{id}"), 404),
    "other route": (Case("GET", "/workflows/{id}"), 200),
    "at_version": (Case("GET", "/workflow/{id}", query=b"at_version=2"), 200),
    "at_version past the end": (Case("GET", "/workflow/{id}", query=b"at_version=999"), 404),
    "bad at_version": (Case("GET", "/workflow/{id}", query=b"at_version=x"), 422),
    "an unknown query parameter": (Case("GET", "/workflow/{id}", query=b"x=1"), 200),
    "wrong Host": (Case("GET", "/workflow/{id}", headers=[(b"host", b"evil.example")]), 400),
    "no Host": (Case("GET", "/workflow/{id}", headers=[]), 400),
    "oversized headers": (
        Case("GET", "/workflow/{id}", headers=[HOST, (b"x-padding", b"x" * MAX_HEADER_BYTES)]),
        431,
    ),
    "a form body": (
        Case(
            "GET",
            "/workflow/{id}",
            headers=[HOST, (b"content-type", b"text/plain"), (b"content-length", b"3")],
            body=b"a=b",
        ),
        415,
    ),
    # Not a body by the body limit's count, but one by the browser guard's.
    "a form type, a malformed length": (
        Case(
            "GET",
            "/workflow/{id}",
            headers=[HOST, (b"content-type", b"text/plain"), (b"content-length", b"x")],
        ),
        415,
    ),
    "a body over the limit": (
        Case(
            "GET",
            "/workflow/{id}",
            headers=[HOST, (b"content-length", str(MAX_BODY_BYTES + 1).encode())],
        ),
        413,
    ),
    "a JSON body": (
        Case(
            "GET",
            "/workflow/{id}",
            headers=[HOST, (b"content-type", b"application/json"), (b"content-length", b"2")],
            body=b"{}",
        ),
        200,
    ),
    "a chunked body": (
        Case("GET", "/workflow/{id}", headers=[HOST, (b"transfer-encoding", b"chunked")]),
        200,
    ),
    "another method": (Case("PUT", "/workflow/{id}"), 405),
    "another method's route": (Case("POST", "/workflow/{id}/cancel"), 409),
}


@pytest.mark.parametrize(("case", "status"), FALLING_THROUGH.values(), ids=FALLING_THROUGH.keys())
def test_any_other_request_is_left_to_the_whole_stack(
    client: TestClient,
    app: Starlette,
    ids: dict[str, int],
    taken: list[bool],
    case: Case,
    status: int,
) -> None:
    fast, whole = both(client, app, case, ids)

    assert taken == [False]
    assert_same(fast, whole)
    assert fast.status == status
    if status >= 400:
        assert set(msgspec.json.decode(fast.body)) == {"error", "detail"}


def test_a_read_of_an_app_mounted_under_a_prefix_is_left_to_the_whole_stack(
    client: TestClient, app: Starlette, ids: dict[str, int], taken: list[bool]
) -> None:
    scope: dict[str, Any] = {}

    async def mounted(outer: Scope, receive: Receive, send: Send) -> None:
        inner = {**outer, "root_path": "/api", "path": "/api" + outer["path"]}
        scope.update(inner)
        await app(inner, receive, send)

    assert client.portal is not None
    path = f"/workflow/{ids[ID]}".encode()
    answer = client.portal.call(functools.partial(call, mounted, "GET", path, headers=[HOST]))

    assert taken == [False]
    assert answer.status == 200  # the router strips the prefix itself
    assert scope["root_path"] == "/api"


def request_count(client: TestClient, method: str, status: int) -> float:
    """orchestrator_http_requests_total for GET /workflow/{id} with `method` and `status`."""
    text = client.get("/metrics").text
    pattern = (
        rf'^orchestrator_http_requests_total\{{method="{method}",'
        rf'route="/workflow/{{workflow_id}}",status="{status}"\}} (\S+)$'
    )
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_fast_reads_are_counted_in_metrics_as_the_route_counts_them(
    client: TestClient, ids: dict[str, int], taken: list[bool]
) -> None:
    before = request_count(client, "GET", 200), request_count(client, "HEAD", 200)
    missing = request_count(client, "GET", 404)
    taken.clear()

    for _ in range(3):
        assert client.get(f"/workflow/{ids[ID]}").status_code == 200
    assert client.head(f"/workflow/{ids[ID]}").status_code == 200
    assert client.get("/workflow/987654").status_code == 404

    assert taken == [True, True, True, True, False]
    after = request_count(client, "GET", 200), request_count(client, "HEAD", 200)
    assert (after[0] - before[0], after[1] - before[1]) == (3, 1)
    assert request_count(client, "GET", 404) == missing + 1


# With API_TOKEN, with CORS_ORIGINS ----------------------------------------------------------------


@pytest.fixture
def secured(settings: Settings) -> Iterator[tuple[TestClient, Starlette, list[bool]]]:
    """An app with API_TOKEN, its client, and its fast path's spy."""
    app = create_app(dataclasses.replace(settings, api_tokens=(TOKEN,)))
    fast = fast_reads_of(app)
    answered = fast.answered
    seen: list[bool] = []

    async def spy(scope: Scope, receive: Receive, send: Send) -> bool:
        result = await answered(scope, receive, send)
        seen.append(result)
        return result

    fast.answered = spy  # type: ignore[method-assign]
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, app, seen


BEARER = (b"authorization", f"Bearer {TOKEN}".encode())
SECURED = {
    "the token": (Case("GET", "/workflow/{id}", headers=[HOST, BEARER]), 200, True),
    "a lower-case scheme": (
        Case(
            "GET",
            "/workflow/{id}",
            headers=[HOST, (b"authorization", b"bearer " + TOKEN.encode())],
        ),
        200,
        True,
    ),
    "the token, HEAD": (Case("HEAD", "/workflow/{id}", headers=[HOST, BEARER]), 200, True),
    "no token": (Case("GET", "/workflow/{id}"), 401, False),
    "a wrong token": (
        Case("GET", "/workflow/{id}", headers=[HOST, (b"authorization", b"Bearer nope")]),
        401,
        False,
    ),
    "another scheme": (
        Case(
            "GET", "/workflow/{id}", headers=[HOST, (b"authorization", b"Basic " + TOKEN.encode())]
        ),
        401,
        False,
    ),
    "no token, unknown id": (Case("GET", "/workflow/987654"), 401, False),
    "no token, a public path's name": (Case("GET", "/workflow/health"), 401, False),
    "the token, another origin's page": (
        Case("GET", "/workflow/{id}", headers=[HOST, BEARER, (b"origin", b"http://evil.example")]),
        200,
        True,
    ),
    "the token, wrong Host": (
        Case("GET", "/workflow/{id}", headers=[(b"host", b"evil.example"), BEARER]),
        400,
        False,
    ),
}


@pytest.mark.parametrize(("case", "status", "fast"), SECURED.values(), ids=SECURED.keys())
def test_with_a_token_the_fast_path_answers_only_what_the_stack_lets_through(
    secured: tuple[TestClient, Starlette, list[bool]], case: Case, status: int, fast: bool
) -> None:
    client, app, taken = secured
    created = client.post(
        "/workflows", json={"name": "w"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert created.status_code == 201
    taken.clear()

    first, whole = both(client, app, case, {ID: created.json()["id"], DELETED: 0})

    assert taken == [fast]
    assert_same(first, whole)
    assert first.status == status
    if status == 401:
        assert first.header("www-authenticate") is not None


def test_with_cors_origins_every_read_goes_through_the_stack_for_its_cors_headers(
    settings: Settings,
) -> None:
    app = create_app(dataclasses.replace(settings, cors_origins=(LISTED_ORIGIN,)))
    assert isinstance(app, OrchestratorApp)
    assert app.fast_reads is None
    with TestClient(app) as client:
        workflow_id = client.post("/workflows", json={"name": "w"}).json()["id"]
        plain = client.get(f"/workflow/{workflow_id}")
        listed = client.get(f"/workflow/{workflow_id}", headers={"Origin": LISTED_ORIGIN})

    assert (plain.status_code, plain.headers["vary"]) == (200, "Origin")
    assert listed.headers["access-control-allow-origin"] == LISTED_ORIGIN


def test_the_fast_path_stays_off_if_the_route_no_longer_reads_as_it_answers(
    app: Starlette,
) -> None:
    runtime = runtime_of(app)
    encoded = app.state.encoded_reads
    observe = app.state.metrics.observe_request
    changed = tuple(
        dataclasses.replace(e, handler=workflow_routes.get_workflow)
        if (e.method, e.path) == ("GET", WORKFLOW_PATH)
        else e
        for e in ENDPOINTS
    )

    checks = refusals(runtime.settings)
    assert fast_reads_for(runtime, encoded, observe, checks, ENDPOINTS) is not None
    assert fast_reads_for(runtime, encoded, observe, checks, changed) is None
    assert fast_reads_for(runtime, encoded, observe, checks, ()) is None


@pytest.mark.parametrize("change", ["middleware", "route", "exception handler"])
def test_a_guard_a_host_adds_to_the_app_runs_on_every_read(
    settings: Settings, change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An app embedded with a middleware (or route, or handler) of the host's own: the fast
    path never answers past it, so a guard that refuses every read refuses these too."""

    class DenyReads:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["method"] == "GET":
                await Response("no", status_code=403)(scope, receive, send)
                return
            await self.app(scope, receive, send)

    app = create_app(settings)
    fast = fast_reads_of(app)
    asked: list[str] = []
    answered = fast.answered

    async def spy(scope: Scope, receive: Receive, send: Send) -> bool:
        asked.append(scope["path"])
        return await answered(scope, receive, send)

    monkeypatch.setattr(fast, "answered", spy)
    if change == "middleware":
        app.add_middleware(DenyReads)
    elif change == "route":
        app.router.routes.insert(0, Route("/workflow/{workflow_id}", Response("other")))
    else:
        app.add_exception_handler(418, lambda request, exc: Response("tea", status_code=418))
    with TestClient(app) as client:
        workflow_id = client.post("/workflows", json={"name": "w"}).json()["id"]
        seen = client.get(f"/workflow/{workflow_id}")

    assert asked == []
    if change == "middleware":
        assert (seen.status_code, seen.text) == (403, "no")
    elif change == "route":
        assert (seen.status_code, seen.text) == (200, "other")
    else:
        assert seen.status_code == 200 and seen.json()["workflow_id"] == workflow_id


# On the wire -------------------------------------------------------------------------------------


async def exchange(port: int, request: bytes) -> bytes:
    """Send one request on a new connection; the whole answer, its Date header taken out."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"\r\ncontent-length: (\d+)\r\n", head, re.IGNORECASE)
        assert length is not None, head
        body = b"" if request.startswith(b"HEAD") else await reader.readexactly(int(length[1]))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return re.sub(rb"\r\ndate: [^\r]*", b"", head, flags=re.IGNORECASE) + body


@pytest.mark.anyio
async def test_a_real_server_sends_the_fast_answer_byte_for_byte_as_the_stacks(
    settings: Settings,
) -> None:
    app = create_app(settings)
    assert isinstance(app, OrchestratorApp)
    fast_path = app.fast_reads
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", ws="none", **server_options(settings)
    )
    server = uvicorn.Server(config)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)
        create = (
            b"POST /workflows HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b'content-length: 13\r\n\r\n{"name":"w1"}'
        )
        created = await exchange(port, create)
        assert created.startswith(b"HTTP/1.1 201 ")
        workflow_id = msgspec.json.decode(created.partition(b"\r\n\r\n")[2])["id"]
        requests = [
            b"GET /workflow/%d HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n" % workflow_id,
            b"HEAD /workflow/%d/ HTTP/1.1\r\nhost: localhost:8000\r\n\r\n" % workflow_id,
            b"GET /workflow/%d HTTP/1.1\r\nhost: evil.example\r\n\r\n" % workflow_id,
            b"GET /workflow/987654 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n",
        ]
        fast = [await exchange(port, request) for request in requests]
        app.fast_reads = None
        whole = [await exchange(port, request) for request in requests]
    finally:
        app.fast_reads = fast_path
        server.should_exit = True
        await serving
        listener.close()

    assert fast == whole
    assert [answer.split(b"\r\n", 1)[0] for answer in fast] == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 400 Bad Request",
        b"HTTP/1.1 404 Not Found",
    ]
    assert fast[0].split(b"\r\n\r\n")[0].split(b"\r\n")[1:] == [
        b"server: uvicorn",
        b"content-length: %d" % len(fast[0].partition(b"\r\n\r\n")[2]),
        b"content-type: application/json",
    ]
