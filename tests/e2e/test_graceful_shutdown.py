"""SIGTERM: the server stops accepting at once, lets running steps finish within
SHUTDOWN_GRACE_SECONDS (or leaves them recorded as started), and after a restart every workflow
runs to COMPLETE with each step's outcome recorded exactly once."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ServerProcess, StartServer, wait_for

pytestmark = pytest.mark.e2e

WORKFLOWS = 3
STATES = ("INIT", "PREPARE", "EXECUTE", "VALIDATE", "COMPLETE")


def start_workflows(server: ServerProcess, running: int = WORKFLOWS) -> list[int]:
    """Start WORKFLOWS automatic workflows; return once `running` INIT steps run in threads
    (the others wait in the queue)."""
    with server.client() as client:
        ids = [
            client.post("/workflow/start", json={"name": f"slow {n}"}).json()["workflow_id"]
            for n in range(WORKFLOWS)
        ]
        wait_for(
            lambda: client.get("/execution/stats").json()["worker_pool"]["active_tasks"],
            lambda threads: threads == running,
            what=f"{running} INIT steps running in threads",
        )
    return ids


def terminate(server: ServerProcess) -> float:
    """SIGTERM the server and wait for it to exit; how long that took. New connections are
    refused while it finishes."""
    process = server.process
    assert process is not None
    began = time.monotonic()
    process.terminate()
    time.sleep(0.3)  # uvicorn closes its listening socket on its next tick (0.1 s)
    if process.poll() is None:
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.base_url}/health", timeout=2)
    process.wait(timeout=15)
    server.process = None
    # uvicorn re-raises the SIGTERM it handled once it has shut down, so -15 is a clean exit.
    assert process.returncode in (0, -15), server.output()
    return time.monotonic() - began


def restart_quickly_and_finish(server: ServerProcess, ids: list[int]) -> dict[int, Any]:
    """Restart with instant tasks; each workflow's events once it is COMPLETE and finalized."""
    server.overrides = {**server.overrides, "TASK_TIME_SCALE": "0"}
    server.start()
    events = {}
    with server.client() as client:
        for workflow_id in ids:
            path = f"/workflow/{workflow_id}"
            wait_for(
                lambda: client.get(path).json(),  # noqa: B023 (called before `path` changes)
                lambda body: body["status"] == "COMPLETE" and "COMPLETE" in body["task_results"],
                what=f"workflow {workflow_id} to complete after the restart",
            )
            events[workflow_id] = client.get(f"{path}/events").json()
    return events


def init_recorded_at(events: list[dict[str, Any]]) -> datetime:
    """When the INIT step's outcome was recorded."""
    [event] = [e for e in events if e["type"] == "StepSucceeded" and e["data"]["state"] == "INIT"]
    return datetime.fromisoformat(event["recorded_at"].replace("Z", "+00:00"))


def counts(events: list[dict[str, Any]], event_type: str) -> Counter[str]:
    """How many events of `event_type` each state has."""
    return Counter(e["data"]["state"] for e in events if e["type"] == event_type)


def assert_each_step_recorded_once(events: list[dict[str, Any]]) -> None:
    """Four transitions and one StepSucceeded per state, nothing failed."""
    types = [e["type"] for e in events]
    assert types.count("WorkflowTransitioned") == 4, types
    assert counts(events, "StepSucceeded") == Counter(STATES), types
    assert "StepFailed" not in types


def test_sigterm_lets_running_steps_finish_within_the_grace(start_server: StartServer) -> None:
    # INIT takes 0.5 s x 3 = 1.5 s; the grace is ample. Two threads: the third INIT is queued.
    server = start_server(TASK_TIME_SCALE="3", SHUTDOWN_GRACE_SECONDS="10", MAX_WORKERS="2")
    ids = start_workflows(server, running=2)

    took = terminate(server)
    stopped = datetime.now(UTC)

    # The queued INIT was not begun meanwhile (that would take another 1.5 s).
    assert took < 1.5 + 1.3, f"the server took {took:.1f} s to stop"
    finished = restart_quickly_and_finish(server, ids)
    for workflow_id, events in finished.items():
        assert_each_step_recorded_once(events)
        assert counts(events, "StepStarted") == Counter(STATES), workflow_id
    # The two running INITs finished and were recorded before the server stopped (and began
    # PREPARE in the same append, which ran after the restart); the queued one ran after it.
    recorded = sorted(init_recorded_at(events) < stopped for events in finished.values())
    assert recorded == [False, True, True]


def test_steps_left_at_the_end_of_the_grace_resume_once_after_a_restart(
    start_server: StartServer,
) -> None:
    # INIT takes 0.5 s x 20 = 10 s: far past a grace of 0.5 s.
    server = start_server(TASK_TIME_SCALE="20", SHUTDOWN_GRACE_SECONDS="0.5")
    ids = start_workflows(server)

    took = terminate(server)
    stopped = datetime.now(UTC)

    assert took < 0.5 + 2.5, f"the server took {took:.1f} s to stop"
    for workflow_id, events in restart_quickly_and_finish(server, ids).items():
        assert_each_step_recorded_once(events)
        # INIT was left recorded as started and ran again, once, after the restart.
        assert init_recorded_at(events) > stopped, workflow_id
        assert counts(events, "StepStarted") == Counter(STATES), workflow_id


def test_a_next_whose_step_outlasts_the_grace_is_answered_503_json(
    start_server: StartServer,
) -> None:
    # INIT takes 0.5 s x 20 = 10 s: far past a grace of 0.5 s.
    server = start_server(TASK_TIME_SCALE="20", SHUTDOWN_GRACE_SECONDS="0.5")
    with server.client() as client:
        created = client.post("/workflow/start", json={"name": "manual", "auto_start": False})
        workflow_id = created.json()["workflow_id"]
    answers: list[httpx.Response] = []

    def advance() -> None:
        with httpx.Client(base_url=server.base_url, timeout=15) as own:
            answers.append(own.post(f"/workflow/{workflow_id}/next"))

    asking = threading.Thread(target=advance)
    asking.start()
    with server.client() as client:
        wait_for(
            lambda: client.get("/execution/stats").json()["worker_pool"]["active_tasks"],
            lambda threads: threads == 1,
            what="the INIT step running in a thread",
        )
    terminate(server)
    asking.join(timeout=15)

    [answer] = answers
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "5"
    assert answer.json() == {
        "error": "shutting_down",
        "detail": f"the server is shutting down and workflow {workflow_id}'s step did not "
        "finish within SHUTDOWN_GRACE_SECONDS; the step stays recorded as started and runs "
        "again when the server starts again",
    }
