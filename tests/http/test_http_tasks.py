"""User tasks seen through HTTP: their results, their errors, and the task timeout."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from orchestrator.domain.states import State
from orchestrator.engine.tasks import TaskContext, TaskRegistry
from orchestrator.settings import Settings
from tests.http.conftest import task_result

TIMEOUT = 0.2


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A short task timeout; the built-in tasks are instant, so only a slow task reaches it."""
    return dataclasses.replace(settings, task_timeout=TIMEOUT)


def test_a_registered_task_result_shows_up_in_task_results(
    registry: TaskRegistry,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    def count_files(context: TaskContext) -> dict[str, Any]:
        return {
            "status": "prepared",
            "workflow": context.workflow_id,
            "state": context.state and context.state.value,
            "files": context.config["files"],
        }

    registry.register(State.PREPARE, count_files)

    workflow_id = start({"name": "custom", "config": {"files": ["a.txt", "b.txt"]}})
    body = settle(workflow_id)

    assert body["status"] == "COMPLETE"
    assert body["task_results"]["PREPARE"] == task_result(
        {
            "status": "prepared",
            "workflow": workflow_id,
            "state": "PREPARE",
            "files": ["a.txt", "b.txt"],
        },
        "count_files",
    )
    assert body["task_results"]["INIT"]["status"] == "initialized"


def test_a_registered_task_runs_on_manual_next_too(
    client: TestClient, registry: TaskRegistry, start: Callable[[dict[str, Any]], int]
) -> None:
    registry.register(State.INIT, lambda context: {"retries_seen": context.retries})
    workflow_id = start({"name": "manual", "auto_start": False})

    response = client.post(f"/workflow/{workflow_id}/next")

    assert response.json()["current_state"] == "PREPARE"
    body = client.get(f"/workflow/{workflow_id}").json()
    assert body["task_results"] == {"INIT": task_result({"retries_seen": 0}, "<lambda>")}


def test_a_task_that_raises_fails_the_workflow_with_its_error(
    registry: TaskRegistry,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    def broken(context: TaskContext) -> dict[str, Any]:
        raise ValueError(f"cannot execute workflow {context.workflow_id}")

    registry.register(State.EXECUTE, broken)

    workflow_id = start({"name": "broken"})
    body = settle(workflow_id)

    assert body["status"] == "FAILED"
    assert body["error_message"] == f"ValueError: cannot execute workflow {workflow_id}"
    assert body["transitions"][-1]["from_state"] == "EXECUTE"
    assert body["transitions"][-1]["trigger"] == "fail"
    assert list(body["task_results"]) == ["INIT", "PREPARE"]


def test_a_task_that_returns_no_dict_fails_the_workflow(
    registry: TaskRegistry,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    def returns_a_list(context: TaskContext) -> Any:
        return ["not", "a", "dict"]

    registry.register(State.VALIDATE, returns_a_list)

    body = settle(start({"name": "wrong result"}))

    assert body["status"] == "FAILED"
    assert body["error_message"] == "TypeError: task returned list, expected a dict"


def test_a_task_running_past_the_timeout_fails_the_workflow_as_timed_out(
    registry: TaskRegistry,
    gate: threading.Event,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    def slow(context: TaskContext) -> dict[str, Any]:
        gate.wait(TIMEOUT * 50)  # far past the timeout; the fixture opens the gate at teardown
        return {"status": "too late"}

    registry.register(State.INIT, slow)

    body = settle(start({"name": "slow"}))

    assert body["status"] == "FAILED"
    assert "timed out" in body["error_message"]
    assert body["error_message"] == f"INIT step timed out after {TIMEOUT:g} s"
    assert body["next_trigger"] == "retry"
    assert body["task_results"] == {}
