"""A `next` that loses its race to cancel or delete, and config the built-in tasks cannot run."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from orchestrator.domain.states import State
from orchestrator.engine.task_types import MAX_ITERATIONS
from orchestrator.engine.tasks import TaskContext, TaskFunction, TaskRegistry
from orchestrator.eventstore.base import AppendResult, NewEvent
from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.eventstore.keys import IdempotencyClaim
from orchestrator.http.app import runtime_of

DEADLINE = 5.0


def test_a_next_whose_step_is_cancelled_meanwhile_is_refused_not_reported_as_advanced(
    client: TestClient,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
    gate: threading.Event,
    start: Callable[[dict[str, Any]], int],
) -> None:
    registry.register(State.INIT, blocking_task)
    workflow_id = start({"name": "raced", "auto_start": False})

    with ThreadPoolExecutor(max_workers=1) as background:
        try:
            stepping = background.submit(client.post, f"/workflow/{workflow_id}/next")
            assert entered.wait(DEADLINE)
            cancelled = client.post(f"/workflow/{workflow_id}/cancel")
        finally:
            gate.set()
        answer = stepping.result(timeout=DEADLINE)

    assert cancelled.status_code == 200
    assert answer.status_code == 409
    assert answer.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is CANCELLED; cannot next; allowed: edit, delete "
        "(its step's result was discarded: the workflow moved on while the step ran)",
    }
    body = client.get(f"/workflow/{workflow_id}").json()
    assert body["status"] == "CANCELLED"
    assert "INIT" not in body["task_results"]


def test_a_next_whose_workflow_is_deleted_meanwhile_is_not_found(
    client: TestClient,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
    gate: threading.Event,
    start: Callable[[dict[str, Any]], int],
) -> None:
    registry.register(State.INIT, blocking_task)
    workflow_id = start({"name": "gone", "auto_start": False})

    with ThreadPoolExecutor(max_workers=1) as background:
        try:
            stepping = background.submit(client.post, f"/workflow/{workflow_id}/next")
            assert entered.wait(DEADLINE)
            assert client.post(f"/workflow/{workflow_id}/cancel").status_code == 200
            assert client.delete(f"/workflow/{workflow_id}").status_code == 204
        finally:
            gate.set()
        answer = stepping.result(timeout=DEADLINE)

    assert answer.status_code == 404
    assert answer.json() == {
        "error": "not_found",
        "detail": f"workflow {workflow_id} does not exist",
    }


@pytest.mark.parametrize(
    ("config", "detail"),
    [
        (
            {"iterations": MAX_ITERATIONS + 1},
            f"config iterations must be between 0 and {MAX_ITERATIONS}, got {MAX_ITERATIONS + 1}",
        ),
        ({"iterations": -1}, f"config iterations must be between 0 and {MAX_ITERATIONS}, got -1"),
        ({"iterations": "many"}, "config iterations must be an integer, got 'many'"),
        ({"simulate_failure": "yes"}, "config simulate_failure must be true or false"),
        (
            {"simulate_failure": True, "fail_until_retry": "2"},
            "config fail_until_retry must be a non-negative integer, got '2'",
        ),
    ],
)
@pytest.mark.parametrize("route", ["/workflow/start", "/workflows"])
def test_config_the_built_in_tasks_cannot_run_is_refused_before_anything_is_recorded(
    client: TestClient, route: str, config: dict[str, Any], detail: str
) -> None:
    before = client.get("/health").json()["log_position"]

    response = client.post(route, json={"name": "bad config", "config": config})

    assert response.status_code == 422
    assert response.json() == {"error": "validation_error", "detail": detail}
    assert client.get("/health").json()["log_position"] == before


def test_an_edit_to_config_the_tasks_cannot_run_is_refused(client: TestClient) -> None:
    created = client.post("/workflows", json={"name": "editable"}).json()

    response = client.put(
        f"/workflows/{created['workflow_id']}", json={"config": {"iterations": 1.5}}
    )

    assert response.status_code == 422
    assert response.json()["detail"] == "config iterations must be an integer, got 1.5"
    assert client.get(f"/workflows/{created['workflow_id']}").json()["version"] == 1


@pytest.mark.parametrize(
    ("raised", "named"),
    [
        (SystemExit(3), "SystemExit"),
        (StopIteration(), "StopIteration"),
        (KeyboardInterrupt(), "KeyboardInterrupt"),
    ],
)
def test_a_task_that_raises_something_other_than_an_exception_fails_its_step(
    client: TestClient,
    registry: TaskRegistry,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
    raised: BaseException,
    named: str,
) -> None:
    def misbehave(context: TaskContext) -> dict[str, Any]:
        raise raised

    registry.register(State.PREPARE, misbehave)
    workflow_id = start({"name": "misbehaving"})

    body = settle(workflow_id)

    assert body["status"] == "FAILED"
    assert body["error_message"].startswith(f"TaskAborted: the task raised {named}")
    assert client.get("/health").status_code == 200


def test_an_outcome_the_store_fails_to_record_is_recorded_on_a_later_attempt(
    app: Starlette,
    client: TestClient,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    store = runtime_of(app).store
    real_append = store.append
    failures = {"left": 2}

    async def flaky_append(
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        idempotency: IdempotencyClaim | None = None,
    ) -> AppendResult:
        if any(event.type == "StepSucceeded" for event in events) and failures["left"]:
            failures["left"] -= 1
            raise StoreUnavailable("disk briefly full")
        return await real_append(stream_id, expected_version, events, idempotency=idempotency)

    store.append = flaky_append  # type: ignore[method-assign]
    workflow_id = start({"name": "survives"})

    body = settle(workflow_id)

    assert failures["left"] == 0
    assert body["status"] == "COMPLETE"
    assert [t["to_state"] for t in body["transitions"]] == [
        "PREPARE",
        "EXECUTE",
        "VALIDATE",
        "COMPLETE",
    ]


def test_a_driver_whose_read_of_the_workflow_fails_once_still_completes_it(
    app: Starlette,
    client: TestClient,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    service = runtime_of(app).service
    real_load = service.load
    failures = {"left": 1}

    async def flaky_load(aggregate_id: int, *, fresh: bool = False) -> Any:
        if fresh and failures["left"]:
            failures["left"] -= 1
            raise StoreUnavailable("database is locked")
        return await real_load(aggregate_id, fresh=fresh)

    service.load = flaky_load  # type: ignore[method-assign]
    workflow_id = start({"name": "survives a failed read"})

    body = settle(workflow_id)

    assert failures["left"] == 0
    assert body["status"] == "COMPLETE"
