"""What the log says: transitions with the step's own duration, failures with their error,
and how much was resumed at start-up."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from orchestrator.domain.states import State
from orchestrator.engine import task_types
from orchestrator.engine.tasks import TaskRegistry
from orchestrator.http.app import create_app
from orchestrator.settings import Settings
from tests.http.conftest import DEADLINE
from tests.settings_for_tests import TESTCLIENT_HOSTS


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


def test_a_failed_step_is_logged_with_its_error_and_so_is_its_transition(
    caplog: pytest.LogCaptureFixture,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.transitions")
    workflow_id = start({"name": "flaky", "config": {"simulate_failure": True}})
    error = settle(workflow_id)["error_message"]

    lines = messages(caplog, "orchestrator.transitions")
    assert re.fullmatch(
        rf"workflow {workflow_id} INIT step failed after \d+\.\d{{3}}s: {re.escape(error)}",
        lines[0],
    ), lines
    assert re.fullmatch(
        rf"workflow {workflow_id} INIT -> FAILED \(fail\) after \d+\.\d{{3}}s: {re.escape(error)}",
        lines[1],
    ), lines


def test_a_transition_line_gives_the_steps_own_duration(
    caplog: pytest.LogCaptureFixture,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
    client: TestClient,
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.transitions")
    workflow_id = start({"name": "steps"})
    settle(workflow_id)
    events = client.get(f"/workflow/{workflow_id}/events").json()
    durations = [e["data"]["duration"] for e in events if e["type"] == "StepSucceeded"]

    lines = messages(caplog, "orchestrator.transitions")
    logged = [float(m.group(1)) for line in lines if (m := re.search(r"after (\S+)s$", line))]
    assert logged == [round(d, 3) for d in durations[:4]]
    cancel_line = f"workflow {workflow_id} INIT -> CANCELLED (cancel)"
    assert cancel_line not in lines  # nothing was cancelled: no invented lines


def test_start_up_logs_how_many_workflows_and_tasks_it_resumed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.runtime")
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'wf.db'}",
        task_time_scale=0,
        log_file="",
        allowed_hosts=TESTCLIENT_HOSTS,
    )
    release = threading.Event()
    holding = TaskRegistry()
    holding.register(State.PREPARE, lambda context: {"released": release.wait(10)})

    def held_sleep(config: dict[str, Any]) -> task_types.TaskWork:
        return lambda: {"released": release.wait(10)}

    monkeypatch.setitem(task_types.TASK_TYPES, "sleep", held_sleep)
    try:
        with TestClient(create_app(settings, holding)) as client:
            for name in ("one", "two"):
                client.post("/workflow/start", json={"name": name})
            client.post("/tasks", json={"name": "nap", "task_type": "sleep"})
            deadline = time.monotonic() + DEADLINE
            while busy_threads(client.get("/execution/stats").json()) < 3:
                assert time.monotonic() < deadline
                time.sleep(0.005)  # poll interval; the deadline above bounds the wait
    finally:
        release.set()  # the stopped server's threads end; their results are dropped
    caplog.clear()

    with TestClient(create_app(settings)):
        pass

    [line] = messages(caplog, "orchestrator.runtime")
    assert re.fullmatch(
        r"log at position \d+; resumed 2 workflow\(s\) and 1 task\(s\) that were in flight",
        line,
    ), line


def busy_threads(stats: dict[str, Any]) -> int:
    """Threads running a step or a standalone task, in both pools."""
    steps: int = stats["worker_pool"]["active_tasks"]
    tasks: int = stats["task_pool"]["active_tasks"]
    return steps + tasks
