"""Starting workflows and moving them forward: automatic runs, manual `next`, steps in progress."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from unittest.mock import ANY

import pytest
from starlette.testclient import TestClient

from orchestrator.domain.states import State
from orchestrator.engine.tasks import DEFAULT_ITERATIONS, TaskFunction, TaskRegistry
from tests.http.conftest import task_result

DEADLINE = 5.0
FORWARD = [
    ("INIT", "PREPARE", "prepare"),
    ("PREPARE", "EXECUTE", "execute"),
    ("EXECUTE", "VALIDATE", "validate"),
    ("VALIDATE", "COMPLETE", "complete"),
]


def test_start_answers_201_with_the_documented_body(client: TestClient) -> None:
    response = client.post("/workflow/start", json={"name": "nightly build"})

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "message": "Workflow started",
        "workflow_id": 1,
        "name": "nightly build",
        "status": "INIT",
        "current_state": "INIT",
    }


def test_each_start_gets_a_new_increasing_id(start: Callable[[dict[str, Any]], int]) -> None:
    first = start({"name": "a", "auto_start": False})
    second = start({"name": "b", "auto_start": False})

    assert second > first >= 1


def test_a_workflow_can_be_read_right_after_its_201(client: TestClient) -> None:
    started = client.post(
        "/workflow/start",
        json={"name": "fresh", "description": "read me", "config": {"k": 1}, "auto_start": False},
    )
    workflow_id = started.json()["workflow_id"]

    response = client.get(f"/workflow/{workflow_id}")

    assert response.status_code == 200
    body = response.json()
    assert body["workflow_id"] == workflow_id
    assert body["name"] == "fresh"
    assert body["description"] == "read me"
    assert body["status"] == body["current_state"] == "INIT"
    assert body["retries"] == 0
    assert body["started_at"] is not None
    assert body["completed_at"] is None
    assert body["error_message"] is None
    assert body["next_trigger"] == "prepare"
    assert body["transitions"] == []
    assert body["task_results"] == {}


def test_an_automatic_workflow_is_readable_right_after_its_201(client: TestClient) -> None:
    workflow_id = client.post("/workflow/start", json={"name": "auto"}).json()["workflow_id"]

    response = client.get(f"/workflow/{workflow_id}")

    assert response.status_code == 200
    assert response.json()["workflow_id"] == workflow_id


@pytest.mark.parametrize("iterations", [None, 0, 1, 37], ids=lambda n: f"iterations={n}")
def test_an_automatic_workflow_runs_to_complete_with_every_task_result(
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
    iterations: int | None,
) -> None:
    config = None if iterations is None else {"iterations": iterations}
    expected_iterations = DEFAULT_ITERATIONS if iterations is None else iterations

    body = settle(start({"name": "auto", "config": config}))

    assert body["status"] == body["current_state"] == "COMPLETE"
    assert body["next_trigger"] is None
    assert body["error_message"] is None
    assert body["retries"] == 0
    assert body["completed_at"] is not None
    assert [(t["from_state"], t["to_state"], t["trigger"]) for t in body["transitions"]] == FORWARD
    results = body["task_results"]
    assert list(results) == ["INIT", "PREPARE", "EXECUTE", "VALIDATE", "COMPLETE"]
    assert results["INIT"] == task_result({"status": "initialized", "message": ANY}, "initialize")
    assert results["PREPARE"] == task_result(
        {"status": "prepared", "files_created": 3, "message": ANY}, "prepare"
    )
    assert results["EXECUTE"] == task_result(
        {
            "status": "executed",
            "computation_result": sum(i * i for i in range(expected_iterations)),
            "iterations": expected_iterations,
        },
        "execute",
    )
    assert results["VALIDATE"] == task_result(
        {"status": "validated", "validation_passed": True, "checks_performed": 5}, "validate"
    )
    assert results["COMPLETE"] == task_result({"status": "completed", "message": ANY}, "finalize")


def test_each_transition_carries_its_time_as_both_timestamp_and_created_at(
    start: Callable[[dict[str, Any]], int], settle: Callable[[int], dict[str, Any]]
) -> None:
    body = settle(start({"name": "auto"}))

    times = [t["timestamp"] for t in body["transitions"]]
    assert len(times) == 4
    for transition in body["transitions"]:
        assert set(transition) == {
            "id",
            "workflow_id",
            "from_state",
            "to_state",
            "trigger",
            "transition_metadata",
            "timestamp",
            "created_at",
        }
        assert transition["workflow_id"] == body["workflow_id"]
        assert transition["timestamp"] == transition["created_at"]
        assert transition["timestamp"].endswith("Z")
    assert times == sorted(times)
    assert body["started_at"] <= times[0]
    assert body["completed_at"] == times[-1]


def test_a_manual_workflow_waits_in_init(
    start: Callable[[dict[str, Any]], int], settle: Callable[[int], dict[str, Any]]
) -> None:
    body = settle(start({"name": "manual", "auto_start": False}))

    assert body["status"] == "INIT"
    assert body["transitions"] == []


def test_next_moves_a_manual_workflow_one_state_per_call_until_complete(
    client: TestClient, start: Callable[[dict[str, Any]], int]
) -> None:
    workflow_id = start({"name": "manual", "auto_start": False})

    for number, (_, to_state, _) in enumerate(FORWARD, start=1):
        response = client.post(f"/workflow/{workflow_id}/next")

        assert response.status_code == 200, response.text
        assert response.json() == {
            "message": ANY,
            "workflow_id": workflow_id,
            "current_state": to_state,
            "status": to_state,
        }
        body = client.get(f"/workflow/{workflow_id}").json()
        assert body["current_state"] == to_state
        assert len(body["transitions"]) == number

    body = client.get(f"/workflow/{workflow_id}").json()
    assert [(t["from_state"], t["to_state"], t["trigger"]) for t in body["transitions"]] == FORWARD
    assert list(body["task_results"]) == ["INIT", "PREPARE", "EXECUTE", "VALIDATE", "COMPLETE"]
    assert body["next_trigger"] is None


def test_next_on_a_complete_workflow_is_an_invalid_transition(
    client: TestClient, start: Callable[[dict[str, Any]], int]
) -> None:
    workflow_id = start({"name": "manual", "auto_start": False})
    for _ in FORWARD:
        assert client.post(f"/workflow/{workflow_id}/next").status_code == 200

    response = client.post(f"/workflow/{workflow_id}/next")

    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is COMPLETE; cannot next; "
        "allowed: edit, delete (it has finished)",
    }


def test_next_while_an_automatic_step_runs_is_step_in_progress(
    client: TestClient,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
    gate: threading.Event,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    registry.register(State.INIT, blocking_task)
    workflow_id = start({"name": "busy"})
    assert entered.wait(DEADLINE)

    response = client.post(f"/workflow/{workflow_id}/next")

    assert response.status_code == 409
    assert response.json() == {
        "error": "step_in_progress",
        "detail": f"workflow {workflow_id} is running its INIT step; wait for it to finish; "
        "allowed: cancel",
    }
    gate.set()
    assert settle(workflow_id)["status"] == "COMPLETE"


def test_next_while_a_manual_step_runs_is_step_in_progress(
    client: TestClient,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
    gate: threading.Event,
    start: Callable[[dict[str, Any]], int],
) -> None:
    registry.register(State.INIT, blocking_task)
    workflow_id = start({"name": "manual", "auto_start": False})

    with ThreadPoolExecutor(max_workers=1) as background:
        try:
            first = background.submit(client.post, f"/workflow/{workflow_id}/next")
            assert entered.wait(DEADLINE)
            second = client.post(f"/workflow/{workflow_id}/next")
        finally:
            gate.set()
        first_response = first.result(timeout=DEADLINE)

    assert second.status_code == 409
    assert second.json() == {
        "error": "step_in_progress",
        "detail": f"workflow {workflow_id} is running its INIT step; wait for it to finish; "
        "allowed: cancel",
    }
    assert first_response.status_code == 200
    assert first_response.json()["current_state"] == "PREPARE"
    body = client.get(f"/workflow/{workflow_id}").json()
    assert body["task_results"]["INIT"] == task_result(
        {"status": "released", "state": "INIT"}, "wait_for_gate"
    )
    assert len(body["transitions"]) == 1
