"""Idempotency-Key on every command route, through the app with the in-memory store.

For every command route a repeat gets the first answer and appends nothing, also when the answer
was lost after the command was recorded (then it is rebuilt from the log); concurrent requests
with one key run the command once. The rules for keys themselves are in
test_http_idempotency_keys.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response
from starlette.testclient import TestClient

from orchestrator.domain.commands import StartWorkflow
from orchestrator.domain.states import State
from orchestrator.engine.claims import claiming
from orchestrator.engine.tasks import TaskFunction, TaskRegistry
from orchestrator.eventstore.keys import IdempotencyClaim
from orchestrator.http.app import runtime_of
from orchestrator.http.endpoint_table import ENDPOINTS
from orchestrator.http.idempotency import IdempotentCommands
from orchestrator.http.idempotency_key import request_hash
from orchestrator.http.replies import REPLIES
from tests.http.idempotency_helpers import (
    COMMANDS,
    DEADLINE,
    Request,
    call,
    cancelled,
    created,
    failed,
    finished_task,
    manual,
    quiet,
    record_of,
    wait_until,
)

SCENARIOS: dict[str, Callable[[TestClient, Starlette], Request]] = {
    "POST /workflow/start": lambda c, a: ("POST", "/workflow/start", {"name": "k"}),
    "DELETE /workflow/{workflow_id}": lambda c, a: ("DELETE", f"/workflow/{cancelled(c)}", None),
    "POST /workflow/{workflow_id}/next": lambda c, a: (
        "POST",
        f"/workflow/{manual(c)}/next",
        None,
    ),
    "POST /workflow/{workflow_id}/retry": lambda c, a: (
        "POST",
        f"/workflow/{failed(c, a)}/retry",
        None,
    ),
    "POST /workflow/{workflow_id}/cancel": lambda c, a: (
        "POST",
        f"/workflow/{manual(c)}/cancel",
        None,
    ),
    "POST /workflows": lambda c, a: ("POST", "/workflows", {"name": "made"}),
    "PUT /workflows/{workflow_id}": lambda c, a: (
        "PUT",
        f"/workflows/{created(c)}",
        {"name": "renamed"},
    ),
    "DELETE /workflows/{workflow_id}": lambda c, a: ("DELETE", f"/workflows/{created(c)}", None),
    "POST /tasks": lambda c, a: (
        "POST",
        "/tasks",
        {"name": "t", "task_type": "compute", "config": {"iterations": 10}},
    ),
    "DELETE /tasks/{task_id}": lambda c, a: ("DELETE", f"/tasks/{finished_task(c, a)}", None),
    "POST /execution/workflows/{workflow_id}/start": lambda c, a: (
        "POST",
        f"/execution/workflows/{created(c)}/start",
        None,
    ),
    "POST /execution/workflows/{workflow_id}/cancel": lambda c, a: (
        "POST",
        f"/execution/workflows/{manual(c)}/cancel",
        None,
    ),
}


def test_every_command_route_has_a_scenario_and_a_rebuilt_answer() -> None:
    assert sorted(SCENARIOS) == COMMANDS
    assert sorted(f"{method} {path}" for method, path in REPLIES) == COMMANDS


@pytest.mark.parametrize("route", COMMANDS)
def test_a_repeat_gets_the_first_answer_and_appends_nothing(
    app: Starlette, client: TestClient, route: str
) -> None:
    method, url, body = SCENARIOS[route](client, app)
    headers = {"Idempotency-Key": f"first {route}"}
    first = client.request(method, url, json=body, headers=headers)
    assert first.status_code < 300, first.text
    head = quiet(client, app)

    repeat = client.request(method, url, json=body, headers=headers)

    assert (repeat.status_code, repeat.content) == (first.status_code, first.content)
    assert repeat.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert quiet(client, app) == head


@pytest.mark.parametrize("route", COMMANDS)
def test_an_answer_lost_after_its_command_was_recorded_is_rebuilt_from_the_log(
    app: Starlette, client: TestClient, route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def lose_the_answer(key: str, request_hash: bytes, status: int, body: bytes) -> None:
        """As if the server died between the commit and storing the answer."""

    monkeypatch.setattr(runtime_of(app).store, "save_idempotent_answer", lose_the_answer)
    method, url, body = SCENARIOS[route](client, app)
    headers = {"Idempotency-Key": f"lost {route}"}
    first = client.request(method, url, json=body, headers=headers)
    assert first.status_code < 300, first.text
    head = quiet(client, app)
    record = record_of(client, app, f"lost {route}")
    assert record is not None and record.status is None

    retry = client.request(method, url, json=body, headers=headers)

    assert (retry.status_code, retry.content) == (first.status_code, first.content)
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert quiet(client, app) == head


def test_a_start_recorded_whose_client_never_got_the_answer_is_answered_on_retry(
    app: Starlette, client: TestClient
) -> None:
    body = b'{"name": "lost", "auto_start": false}'
    bound = request_hash("POST", "/workflow/start", body)
    claim = IdempotencyClaim(key="start-once", request_hash=bound, created_at=time.time())
    runtime = runtime_of(app)

    async def record_the_command_then_die() -> None:
        with claiming(claim):
            await runtime.coordinator.start(StartWorkflow(workflow_id=0, name="lost"))

    call(client, record_the_command_then_die)
    head = quiet(client, app)

    retry = client.post(
        "/workflow/start",
        content=body,
        headers={"Idempotency-Key": "start-once", "Content-Type": "application/json"},
    )

    assert retry.status_code == 201
    assert retry.json() == {
        "message": "Workflow started",
        "workflow_id": 1,
        "name": "lost",
        "status": "INIT",
        "current_state": "INIT",
    }
    assert quiet(client, app) == head
    assert [w["workflow_id"] for w in client.get("/workflows").json()] == [1]


def test_concurrent_requests_with_one_key_run_the_command_once(
    app: Starlette,
    client: TestClient,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
    gate: threading.Event,
) -> None:
    registry.register(State.INIT, blocking_task)
    workflow_id = manual(client)
    guard: IdempotentCommands = app.state.idempotency
    url, headers = f"/workflow/{workflow_id}/next", {"Idempotency-Key": "together"}

    with ThreadPoolExecutor(max_workers=2) as background:
        try:
            first = background.submit(client.post, url, headers=headers)
            assert entered.wait(DEADLINE)
            second = background.submit(client.post, url, headers=headers)
            wait_until(lambda: guard.waiting_on("together") == 1, "the second to wait")
        finally:
            gate.set()
        answers = [first.result(DEADLINE), second.result(DEADLINE)]

    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].content == answers[1].content
    assert answers[0].json()["current_state"] == "PREPARE"
    events = client.get(f"/workflow/{workflow_id}/events").json()
    commands = [e["metadata"].get("command") for e in events]
    assert commands.count("AdvanceWorkflow") == 1


def test_a_next_refused_after_it_began_its_step_repeats_its_refusal(
    client: TestClient,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
    gate: threading.Event,
) -> None:
    registry.register(State.INIT, blocking_task)
    workflow_id = manual(client)
    url, headers = f"/workflow/{workflow_id}/next", {"Idempotency-Key": "discarded"}

    with ThreadPoolExecutor(max_workers=1) as background:
        try:
            first = background.submit(client.post, url, headers=headers)
            assert entered.wait(DEADLINE)
            assert client.post(f"/workflow/{workflow_id}/cancel").status_code == 200
        finally:
            gate.set()
        refused = first.result(DEADLINE)

    repeat = client.post(url, headers=headers)

    assert refused.status_code == 409
    assert "its step's result was discarded" in refused.json()["detail"]
    assert (repeat.status_code, repeat.content) == (409, refused.content)
    assert repeat.headers["Idempotent-Replayed"] == "true"


def test_a_request_waiting_on_a_key_is_not_handed_a_5xx_but_runs_itself(
    app: Starlette, client: TestClient
) -> None:
    guard: IdempotentCommands = app.state.idempotency
    endpoint = next(e for e in ENDPOINTS if (e.method, e.path) == ("POST", "/workflows"))
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/workflows",
        "query_string": b"",
        "headers": [(b"idempotency-key", b"five-hundred")],
        "app": app,
    }

    async def body() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def both() -> list[Response]:
        release = asyncio.Event()
        runs: list[str] = []

        async def failing() -> Response:
            runs.append("first")
            await release.wait()
            return Response(b'{"error":"internal_error"}', 500, media_type="application/json")

        async def working() -> Response:
            runs.append("second")
            return Response(b'{"ok":true}', 201, media_type="application/json")

        first = asyncio.create_task(guard(StarletteRequest(scope, body), endpoint, failing))
        while not runs:  # the first runs under the key
            await asyncio.sleep(0.001)
        second = asyncio.create_task(guard(StarletteRequest(scope, body), endpoint, working))
        while guard.waiting_on("five-hundred") == 0:
            await asyncio.sleep(0.001)
        release.set()
        answers = await asyncio.gather(first, second)
        assert runs == ["first", "second"]
        return list(answers)

    failed_answer, waiter = call(client, both)

    assert failed_answer.status_code == 500
    assert waiter.status_code == 201
    assert "Idempotent-Replayed" not in waiter.headers
