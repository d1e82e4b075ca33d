"""The execution routes: start a created workflow, read its compact status, and cancel it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from unittest.mock import ANY

from starlette.applications import Starlette
from starlette.testclient import TestClient

from orchestrator.domain.states import State
from orchestrator.engine.tasks import TaskFunction, TaskRegistry
from tests.http.engine_waits import wait_until_idle

DEADLINE = 5.0
FORWARD = [
    ("INIT", "PREPARE", "prepare"),
    ("PREPARE", "EXECUTE", "execute"),
    ("EXECUTE", "VALIDATE", "validate"),
    ("VALIDATE", "COMPLETE", "complete"),
]


def create(client: TestClient, body: dict[str, Any]) -> int:
    """POST /workflows, check the 201, and return the new workflow's id."""
    response = client.post("/workflows", json=body)
    assert response.status_code == 201, response.text
    workflow_id = response.json()["workflow_id"]
    assert isinstance(workflow_id, int)
    return workflow_id


def status_of(client: TestClient, workflow_id: int) -> dict[str, Any]:
    """GET /execution/workflows/{id}/status, checked to be a 200."""
    response = client.get(f"/execution/workflows/{workflow_id}/status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def triples(transitions: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Transitions as (from, to, trigger), for comparison with FORWARD."""
    return [(t["from_state"], t["to_state"], t["trigger"]) for t in transitions]


# POST /execution/workflows/{id}/start ----------------------------------------------------------


def test_start_answers_with_the_workflow_on_its_way(client: TestClient) -> None:
    workflow_id = create(client, {"name": "go"})

    response = client.post(f"/execution/workflows/{workflow_id}/start")

    assert response.status_code == 200
    assert response.json() == {
        "message": "Workflow execution started",
        "workflow_id": workflow_id,
        "current_state": "INIT",
        "status": "INIT",
    }


def test_start_runs_a_created_workflow_to_complete(
    client: TestClient, settle: Callable[[int], dict[str, Any]]
) -> None:
    workflow_id = create(client, {"name": "go", "config": {"iterations": 20}})

    assert client.post(f"/execution/workflows/{workflow_id}/start").status_code == 200
    body = settle(workflow_id)

    assert body["status"] == "COMPLETE"
    assert triples(body["transitions"]) == FORWARD
    assert list(body["task_results"]) == ["INIT", "PREPARE", "EXECUTE", "VALIDATE", "COMPLETE"]
    assert body["task_results"]["EXECUTE"]["computation_result"] == sum(i * i for i in range(20))
    assert (body["launched"], body["auto_start"]) == (True, True)
    assert body["started_at"] is not None
    assert body["completed_at"] == body["transitions"][-1]["timestamp"]
    assert body["allowed_actions"] == ["edit", "delete"]


def test_a_second_start_is_refused_naming_the_state(
    client: TestClient, settle: Callable[[int], dict[str, Any]]
) -> None:
    workflow_id = create(client, {"name": "once"})
    assert client.post(f"/execution/workflows/{workflow_id}/start").status_code == 200
    finished = settle(workflow_id)

    response = client.post(f"/execution/workflows/{workflow_id}/start")

    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is COMPLETE; cannot start; "
        "allowed: edit, delete (it was started already)",
    }
    assert client.get(f"/workflows/{workflow_id}").json() == finished


def test_start_while_the_first_step_runs_is_refused(
    client: TestClient,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
    gate: threading.Event,
    settle: Callable[[int], dict[str, Any]],
) -> None:
    registry.register(State.INIT, blocking_task)
    workflow_id = create(client, {"name": "busy"})
    assert client.post(f"/execution/workflows/{workflow_id}/start").status_code == 200
    assert entered.wait(DEADLINE)

    response = client.post(f"/execution/workflows/{workflow_id}/start")

    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is INIT; cannot start; "
        "allowed: cancel (it was started already)",
    }
    gate.set()
    body = settle(workflow_id)
    assert body["status"] == "COMPLETE"
    assert triples(body["transitions"]) == FORWARD


def test_start_of_a_workflow_from_post_workflow_start_is_refused(
    client: TestClient, start: Callable[[dict[str, Any]], int]
) -> None:
    workflow_id = start({"name": "manual", "auto_start": False})

    response = client.post(f"/execution/workflows/{workflow_id}/start")

    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is INIT; cannot start; "
        "allowed: next, edit, cancel (it was started already)",
    }


def test_start_of_a_cancelled_created_workflow_does_not_claim_a_step_is_running(
    client: TestClient,
) -> None:
    workflow_id = create(client, {"name": "stopped"})
    assert client.post(f"/execution/workflows/{workflow_id}/cancel").status_code == 200

    response = client.post(f"/execution/workflows/{workflow_id}/start")

    assert response.status_code == 409
    detail = response.json()["detail"]
    assert detail.startswith(
        f"workflow {workflow_id} is CANCELLED; cannot start; allowed: edit, delete"
    )
    assert "a step is running" not in detail
    assert detail.endswith("(it is no longer waiting to start)")


def test_start_of_an_unknown_workflow_is_not_found(client: TestClient) -> None:
    response = client.post("/execution/workflows/31/start")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "workflow 31 does not exist"}


# GET /execution/workflows/{id}/status ----------------------------------------------------------


def test_status_of_a_created_workflow_has_the_documented_shape(client: TestClient) -> None:
    workflow_id = create(client, {"name": "waiting"})

    response = client.get(f"/execution/workflows/{workflow_id}/status")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "workflow_id": workflow_id,
        "name": "waiting",
        "status": "INIT",
        "current_state": "INIT",
        "retries": 0,
        "launched": False,
        "step_running": None,
        "next_trigger": "prepare",
        "allowed_actions": ["start", "next", "edit", "cancel", "delete"],
        "transitions": 0,
        "started_at": None,
        "completed_at": None,
        "error_message": None,
    }


def test_status_while_the_first_step_runs_shows_the_step(
    client: TestClient,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
) -> None:
    registry.register(State.INIT, blocking_task)
    workflow_id = create(client, {"name": "busy"})
    assert client.post(f"/execution/workflows/{workflow_id}/start").status_code == 200
    assert entered.wait(DEADLINE)

    assert status_of(client, workflow_id) == {
        "workflow_id": workflow_id,
        "name": "busy",
        "status": "INIT",
        "current_state": "INIT",
        "retries": 0,
        "launched": True,
        "step_running": "INIT",
        "next_trigger": "prepare",
        "allowed_actions": ["cancel"],
        "transitions": 0,
        "started_at": ANY,
        "completed_at": None,
        "error_message": None,
    }


def test_status_of_a_finished_run_counts_its_transitions(
    client: TestClient, settle: Callable[[int], dict[str, Any]]
) -> None:
    workflow_id = create(client, {"name": "done"})
    client.post(f"/execution/workflows/{workflow_id}/start")
    body = settle(workflow_id)

    assert status_of(client, workflow_id) == {
        "workflow_id": workflow_id,
        "name": "done",
        "status": "COMPLETE",
        "current_state": "COMPLETE",
        "retries": 0,
        "launched": True,
        "step_running": None,
        "next_trigger": None,
        "allowed_actions": ["edit", "delete"],
        "transitions": 4,
        "started_at": body["started_at"],
        "completed_at": body["completed_at"],
        "error_message": None,
    }


def test_status_of_a_failed_run_carries_the_error_and_offers_retry(
    client: TestClient, settle: Callable[[int], dict[str, Any]]
) -> None:
    workflow_id = create(client, {"name": "broken", "config": {"simulate_failure": True}})
    client.post(f"/execution/workflows/{workflow_id}/start")
    settle(workflow_id)

    status = status_of(client, workflow_id)

    assert status["status"] == "FAILED"
    assert status["next_trigger"] == "retry"
    assert status["allowed_actions"] == ["retry", "edit", "delete"]
    assert status["transitions"] == 1
    assert status["error_message"] == (
        "SimulatedFailure: simulated failure on attempt 1 (fails while retries < 1)"
    )


def test_status_agrees_with_the_full_workflow_read(
    client: TestClient, settle: Callable[[int], dict[str, Any]]
) -> None:
    workflow_id = create(client, {"name": "agree"})
    client.post(f"/execution/workflows/{workflow_id}/start")
    full = settle(workflow_id)

    status = status_of(client, workflow_id)

    shared = set(status) - {"transitions"}
    assert {key: full[key] for key in shared} == {key: status[key] for key in shared}
    assert status["transitions"] == len(full["transitions"])


def test_status_of_an_unknown_workflow_is_not_found(client: TestClient) -> None:
    response = client.get("/execution/workflows/8/status")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "workflow 8 does not exist"}


# POST /execution/workflows/{id}/cancel ---------------------------------------------------------


def test_cancel_of_a_created_workflow_cancels_it(client: TestClient) -> None:
    workflow_id = create(client, {"name": "unwanted"})

    response = client.post(f"/execution/workflows/{workflow_id}/cancel")

    assert response.status_code == 200
    assert response.json() == {
        "message": "Workflow cancelled",
        "workflow_id": workflow_id,
        "current_state": "CANCELLED",
        "status": "CANCELLED",
    }
    status = status_of(client, workflow_id)
    assert (status["status"], status["transitions"], status["launched"]) == (
        "CANCELLED",
        1,
        False,
    )
    assert status["allowed_actions"] == ["edit", "delete"]
    assert status["completed_at"] is not None


def test_cancel_stops_a_running_workflow_and_discards_the_late_result(
    client: TestClient,
    app: Starlette,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
    gate: threading.Event,
) -> None:
    registry.register(State.INIT, blocking_task)
    workflow_id = create(client, {"name": "doomed"})
    client.post(f"/execution/workflows/{workflow_id}/start")
    assert entered.wait(DEADLINE)

    response = client.post(f"/execution/workflows/{workflow_id}/cancel")

    assert response.status_code == 200
    assert response.json()["current_state"] == "CANCELLED"
    cancelled = client.get(f"/workflows/{workflow_id}").json()
    assert cancelled["step_running"] is None
    gate.set()
    wait_until_idle(client, app)
    after = client.get(f"/workflows/{workflow_id}").json()
    assert after == cancelled
    assert triples(after["transitions"]) == [("INIT", "CANCELLED", "cancel")]
    assert after["task_results"] == {}


def test_cancel_of_a_complete_workflow_is_refused_naming_the_state(
    client: TestClient, settle: Callable[[int], dict[str, Any]]
) -> None:
    workflow_id = create(client, {"name": "done"})
    client.post(f"/execution/workflows/{workflow_id}/start")
    settle(workflow_id)

    response = client.post(f"/execution/workflows/{workflow_id}/cancel")

    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is COMPLETE; cannot cancel; allowed: edit, delete",
    }


def test_cancel_twice_is_refused_the_second_time(client: TestClient) -> None:
    workflow_id = create(client, {"name": "twice"})
    assert client.post(f"/execution/workflows/{workflow_id}/cancel").status_code == 200

    response = client.post(f"/execution/workflows/{workflow_id}/cancel")

    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is CANCELLED; cannot cancel; allowed: edit, delete",
    }


def test_a_cancelled_created_workflow_can_no_longer_be_started(client: TestClient) -> None:
    workflow_id = create(client, {"name": "stopped"})
    client.post(f"/execution/workflows/{workflow_id}/cancel")

    response = client.post(f"/execution/workflows/{workflow_id}/start")

    assert response.status_code == 409
    assert response.json()["error"] == "invalid_transition"
    assert response.json()["detail"].startswith(
        f"workflow {workflow_id} is CANCELLED; cannot start; allowed: edit, delete"
    )
    assert status_of(client, workflow_id)["status"] == "CANCELLED"


def test_cancel_of_an_unknown_workflow_is_not_found(client: TestClient) -> None:
    response = client.post("/execution/workflows/5/cancel")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "workflow 5 does not exist"}
