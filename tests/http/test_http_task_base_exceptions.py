"""A task that raises a BaseException that is not an Exception fails its step, not the server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from orchestrator.domain.states import State
from orchestrator.engine.tasks import TaskContext, TaskRegistry


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
