"""A `next` that loses its race to a cancel or a delete of its workflow."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.testclient import TestClient

from orchestrator.domain.states import State
from orchestrator.engine.tasks import TaskFunction, TaskRegistry

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
