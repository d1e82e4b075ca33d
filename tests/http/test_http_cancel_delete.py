"""Cancel and delete: what each allows, what a late task result does, and 404 after delete."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from unittest.mock import ANY

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from orchestrator.domain.states import State
from orchestrator.engine.tasks import TaskFunction, TaskRegistry
from tests.http.engine_waits import wait_until_idle

DEADLINE = 5.0


def log_position(client: TestClient) -> int:
    """The head of the event log, as /health reports it."""
    position = client.get("/health").json()["log_position"]
    assert isinstance(position, int)
    return position


def test_cancel_stops_a_running_workflow_at_once(
    client: TestClient,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
    start: Callable[[dict[str, Any]], int],
) -> None:
    registry.register(State.INIT, blocking_task)
    workflow_id = start({"name": "doomed"})
    assert entered.wait(DEADLINE)

    response = client.post(f"/workflow/{workflow_id}/cancel")

    assert response.status_code == 200
    assert response.json() == {
        "message": ANY,
        "workflow_id": workflow_id,
        "current_state": "CANCELLED",
        "status": "CANCELLED",
    }
    body = client.get(f"/workflow/{workflow_id}").json()
    assert body["status"] == "CANCELLED"
    assert body["step_running"] is None
    assert body["next_trigger"] is None
    assert body["completed_at"] is not None
    assert [(t["from_state"], t["to_state"], t["trigger"]) for t in body["transitions"]] == [
        ("INIT", "CANCELLED", "cancel")
    ]


def test_the_late_result_of_a_cancelled_step_is_discarded(
    client: TestClient,
    app: Starlette,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
    gate: threading.Event,
    start: Callable[[dict[str, Any]], int],
) -> None:
    registry.register(State.INIT, blocking_task)
    workflow_id = start({"name": "doomed"})
    assert entered.wait(DEADLINE)
    assert client.post(f"/workflow/{workflow_id}/cancel").status_code == 200
    cancelled = client.get(f"/workflow/{workflow_id}").json()
    position = log_position(client)

    gate.set()
    wait_until_idle(client, app)

    body = client.get(f"/workflow/{workflow_id}").json()
    assert body == cancelled
    assert body["status"] == "CANCELLED"
    assert len(body["transitions"]) == 1
    assert body["task_results"] == {}
    assert log_position(client) == position
    assert client.get("/execution/stats").json()["worker_pool"]["active_tasks"] == 0


@pytest.mark.parametrize("steps_taken", [0, 1, 3], ids=["INIT", "PREPARE", "VALIDATE"])
def test_cancel_works_in_any_running_state_of_a_manual_workflow(
    client: TestClient, start: Callable[[dict[str, Any]], int], steps_taken: int
) -> None:
    workflow_id = start({"name": "manual", "auto_start": False})
    for _ in range(steps_taken):
        assert client.post(f"/workflow/{workflow_id}/next").status_code == 200
    state = client.get(f"/workflow/{workflow_id}").json()["status"]

    response = client.post(f"/workflow/{workflow_id}/cancel")

    assert response.status_code == 200
    assert response.json()["current_state"] == "CANCELLED"
    transitions = client.get(f"/workflow/{workflow_id}").json()["transitions"]
    assert (transitions[-1]["from_state"], transitions[-1]["to_state"]) == (state, "CANCELLED")


def test_cancel_on_a_complete_workflow_is_refused_naming_what_is_allowed(
    client: TestClient,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    workflow_id = start({"name": "done"})
    assert settle(workflow_id)["status"] == "COMPLETE"

    response = client.post(f"/workflow/{workflow_id}/cancel")

    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is COMPLETE; cannot cancel; allowed: edit, delete",
    }
    assert client.get(f"/workflow/{workflow_id}").json()["status"] == "COMPLETE"


def test_cancel_on_a_cancelled_workflow_is_refused_naming_what_is_allowed(
    client: TestClient, start: Callable[[dict[str, Any]], int]
) -> None:
    workflow_id = start({"name": "manual", "auto_start": False})
    assert client.post(f"/workflow/{workflow_id}/cancel").status_code == 200

    response = client.post(f"/workflow/{workflow_id}/cancel")

    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is CANCELLED; cannot cancel; allowed: edit, delete",
    }


def test_next_on_a_cancelled_workflow_is_refused_even_while_its_old_task_runs(
    client: TestClient,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
    start: Callable[[dict[str, Any]], int],
) -> None:
    registry.register(State.INIT, blocking_task)
    workflow_id = start({"name": "doomed"})
    assert entered.wait(DEADLINE)
    assert client.post(f"/workflow/{workflow_id}/cancel").status_code == 200

    response = client.post(f"/workflow/{workflow_id}/next")

    assert response.status_code == 409
    body = response.json()
    assert body == {"error": "invalid_transition", "detail": ANY}
    assert body["detail"].startswith(f"workflow {workflow_id} is CANCELLED; cannot next")


def test_next_on_a_cancelled_workflow_is_an_invalid_transition(
    client: TestClient, start: Callable[[dict[str, Any]], int]
) -> None:
    workflow_id = start({"name": "manual", "auto_start": False})
    assert client.post(f"/workflow/{workflow_id}/cancel").status_code == 200

    response = client.post(f"/workflow/{workflow_id}/next")

    assert response.status_code == 409
    body = response.json()
    assert body == {"error": "invalid_transition", "detail": ANY}
    assert body["detail"].startswith(f"workflow {workflow_id} is CANCELLED; cannot next")


@pytest.mark.parametrize(
    ("config", "finish", "state"),
    [
        (None, None, "COMPLETE"),
        ({"simulate_failure": True}, None, "FAILED"),
        (None, "cancel", "CANCELLED"),
    ],
    ids=["COMPLETE", "FAILED", "CANCELLED"],
)
def test_delete_of_a_finished_workflow_answers_204_with_no_body(
    client: TestClient,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
    config: dict[str, Any] | None,
    finish: str | None,
    state: str,
) -> None:
    workflow_id = start({"name": "w", "config": config, "auto_start": finish is None})
    if finish is not None:
        assert client.post(f"/workflow/{workflow_id}/{finish}").status_code == 200
    assert settle(workflow_id)["status"] == state

    response = client.delete(f"/workflow/{workflow_id}")

    assert response.status_code == 204
    assert response.content == b""


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("POST", "/next"), ("POST", "/retry"), ("POST", "/cancel"), ("DELETE", "")],
)
def test_a_deleted_workflow_is_not_found_everywhere(
    client: TestClient,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
    method: str,
    suffix: str,
) -> None:
    workflow_id = start({"name": "gone"})
    assert settle(workflow_id)["status"] == "COMPLETE"
    assert client.delete(f"/workflow/{workflow_id}").status_code == 204

    response = client.request(method, f"/workflow/{workflow_id}{suffix}")

    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "detail": f"workflow {workflow_id} does not exist",
    }


def test_delete_of_a_workflow_waiting_for_next_is_an_invalid_transition(
    client: TestClient, start: Callable[[dict[str, Any]], int]
) -> None:
    workflow_id = start({"name": "manual", "auto_start": False})

    response = client.delete(f"/workflow/{workflow_id}")

    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is INIT; cannot delete; "
        "allowed: next, edit, cancel (cancel it first)",
    }
    assert client.get(f"/workflow/{workflow_id}").status_code == 200


def test_delete_while_a_step_runs_is_an_invalid_transition(
    client: TestClient,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
    start: Callable[[dict[str, Any]], int],
) -> None:
    registry.register(State.INIT, blocking_task)
    workflow_id = start({"name": "busy"})
    assert entered.wait(DEADLINE)

    response = client.delete(f"/workflow/{workflow_id}")

    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is INIT; cannot delete; "
        "allowed: cancel (cancel it first)",
    }
    assert client.get(f"/workflow/{workflow_id}").json()["step_running"] == "INIT"


def test_delete_takes_the_workflow_out_of_the_stats(
    client: TestClient,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    kept = start({"name": "kept"})
    gone = start({"name": "gone"})
    settle(kept)
    settle(gone)
    before = client.get("/execution/stats").json()["workflows"]

    assert client.delete(f"/workflow/{gone}").status_code == 204

    after = client.get("/execution/stats").json()["workflows"]
    assert before["total"] == before["complete"] == 2
    assert after["total"] == after["complete"] == 1
    assert client.get(f"/workflow/{kept}").status_code == 200
