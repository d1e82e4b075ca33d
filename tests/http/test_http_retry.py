"""Failure and retry: a simulated failure, `next` refused in FAILED, `retry` back to INIT."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from unittest.mock import ANY

from starlette.testclient import TestClient

FAILING = {"simulate_failure": True, "fail_until_retry": 1}


def test_a_simulated_failure_leaves_the_workflow_failed_naming_the_attempt(
    start: Callable[[dict[str, Any]], int], settle: Callable[[int], dict[str, Any]]
) -> None:
    body = settle(start({"name": "flaky", "config": FAILING}))

    assert body["status"] == body["current_state"] == "FAILED"
    assert body["error_message"] == (
        "SimulatedFailure: simulated failure on attempt 1 (fails while retries < 1)"
    )
    assert body["next_trigger"] == "retry"
    assert body["completed_at"] is not None
    assert [(t["from_state"], t["to_state"], t["trigger"]) for t in body["transitions"]] == [
        ("INIT", "FAILED", "fail")
    ]
    assert body["task_results"] == {}


def test_retry_sends_a_failed_workflow_back_to_init_and_it_completes(
    client: TestClient,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    workflow_id = start({"name": "flaky", "config": FAILING})
    assert settle(workflow_id)["status"] == "FAILED"

    response = client.post(f"/workflow/{workflow_id}/retry")

    assert response.status_code == 200
    assert response.json() == {
        "message": ANY,
        "workflow_id": workflow_id,
        "retries": 1,
        "current_state": "INIT",
        "status": "INIT",
    }
    body = settle(workflow_id)
    assert body["status"] == "COMPLETE"
    assert body["retries"] == 1
    assert body["error_message"] is None
    assert [(t["from_state"], t["to_state"], t["trigger"]) for t in body["transitions"]] == [
        ("INIT", "FAILED", "fail"),
        ("FAILED", "INIT", "retry"),
        ("INIT", "PREPARE", "prepare"),
        ("PREPARE", "EXECUTE", "execute"),
        ("EXECUTE", "VALIDATE", "validate"),
        ("VALIDATE", "COMPLETE", "complete"),
    ]


def test_each_failed_attempt_is_named_in_the_error(
    client: TestClient,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    workflow_id = start(
        {"name": "flaky", "config": {"simulate_failure": True, "fail_until_retry": 2}}
    )
    assert "attempt 1" in settle(workflow_id)["error_message"]

    assert client.post(f"/workflow/{workflow_id}/retry").json()["retries"] == 1
    second = settle(workflow_id)
    assert second["status"] == "FAILED"
    assert "attempt 2" in second["error_message"]

    assert client.post(f"/workflow/{workflow_id}/retry").json()["retries"] == 2
    third = settle(workflow_id)
    assert third["status"] == "COMPLETE"
    assert third["retries"] == 2


def test_retry_of_a_manual_workflow_waits_in_init_for_next(
    client: TestClient,
    start: Callable[[dict[str, Any]], int],
) -> None:
    workflow_id = start({"name": "flaky", "config": FAILING, "auto_start": False})
    failed = client.post(f"/workflow/{workflow_id}/next")
    assert failed.json()["current_state"] == "FAILED"

    retried = client.post(f"/workflow/{workflow_id}/retry")
    advanced = client.post(f"/workflow/{workflow_id}/next")

    assert retried.json()["current_state"] == "INIT"
    assert advanced.status_code == 200
    assert advanced.json()["current_state"] == "PREPARE"


def test_next_on_a_failed_workflow_is_refused_saying_use_retry(
    client: TestClient,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    workflow_id = start({"name": "flaky", "config": FAILING})
    assert settle(workflow_id)["status"] == "FAILED"

    response = client.post(f"/workflow/{workflow_id}/next")

    assert response.status_code == 409
    body = response.json()
    assert body == {"error": "invalid_transition", "detail": ANY}
    assert f"workflow {workflow_id} is FAILED" in body["detail"]
    assert "use retry" in body["detail"]


def test_retry_on_a_complete_workflow_is_refused_naming_what_is_allowed(
    client: TestClient,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    workflow_id = start({"name": "fine"})
    assert settle(workflow_id)["status"] == "COMPLETE"

    response = client.post(f"/workflow/{workflow_id}/retry")

    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is COMPLETE; cannot retry; allowed: edit, delete",
    }


def test_retry_on_a_running_workflow_is_refused_naming_what_is_allowed(
    client: TestClient, start: Callable[[dict[str, Any]], int]
) -> None:
    workflow_id = start({"name": "manual", "auto_start": False})

    response = client.post(f"/workflow/{workflow_id}/retry")

    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is INIT; cannot retry; allowed: next, edit, cancel",
    }
    assert client.get(f"/workflow/{workflow_id}").json()["retries"] == 0
