"""Work that waits for threads: standalone tasks in their own pool, cancellation that frees a
thread at once, and 429 too_busy (with Retry-After) past MAX_QUEUED_STEPS."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from orchestrator.domain.states import State
from orchestrator.engine.tasks import TaskContext, TaskFunction, TaskRegistry
from orchestrator.settings import Settings
from tests.waiting import wait_for

DEADLINE = 5.0
#: How soon a cancelled sleep must give its thread back.
PROMPTLY = 0.5


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """One thread per pool and room for two waiting steps or runs."""
    return dataclasses.replace(settings, max_workers=1, task_workers=1, max_queued_steps=2)


def pools(client: TestClient) -> tuple[int, int]:
    """Threads busy in the steps' pool and in the tasks' pool."""
    stats = client.get("/execution/stats").json()
    return stats["worker_pool"]["active_tasks"], stats["task_pool"]["active_tasks"]


def wait_until(probe: Callable[[], Any], expected: Any, within: float = DEADLINE) -> float:
    """Poll `probe` until it returns `expected`; how long that took."""
    began = time.monotonic()
    wait_for(
        probe,
        lambda value: bool(value == expected),
        what=f"{expected!r}",
        timeout=within,
        interval=0.005,
    )
    return time.monotonic() - began


def sleep_task(client: TestClient, name: str, seconds: float = 3600) -> int:
    """POST /tasks for a `sleep` of `seconds`; its id."""
    body = {"name": name, "task_type": "sleep", "config": {"duration": seconds}}
    response = client.post("/tasks", json=body)
    assert response.status_code == 201, response.text
    task_id: int = response.json()["id"]
    return task_id


def test_deleting_a_running_sleep_frees_its_thread_at_once(client: TestClient) -> None:
    task_id = sleep_task(client, "an hour")
    wait_until(lambda: pools(client), (0, 1))

    assert client.delete(f"/tasks/{task_id}").status_code == 204

    assert wait_until(lambda: pools(client), (0, 0)) < PROMPTLY
    assert client.get(f"/tasks/{task_id}").status_code == 404


def test_hour_long_tasks_do_not_hold_workflow_steps_back(
    client: TestClient, settle: Callable[[int], dict[str, Any]]
) -> None:
    naps = [sleep_task(client, f"nap {n}") for n in range(2)]
    wait_until(lambda: pools(client), (0, 1))

    started = client.post("/workflow/start", json={"name": "quick"})

    assert started.status_code == 201
    assert settle(started.json()["workflow_id"])["status"] == "COMPLETE"
    for task_id in naps:
        assert client.delete(f"/tasks/{task_id}").status_code == 204
    wait_until(lambda: pools(client), (0, 0))


def test_cancelling_a_workflow_signals_its_running_step(
    client: TestClient, registry: TaskRegistry
) -> None:
    seen = threading.Event()

    def patient(context: TaskContext) -> dict[str, Any]:
        if context.cancelled.wait(10):
            seen.set()
        return {"status": "stopped"}

    registry.register(State.PREPARE, patient)
    workflow_id = client.post("/workflow/start", json={"name": "w"}).json()["workflow_id"]
    wait_until(lambda: pools(client), (1, 0))

    assert client.post(f"/workflow/{workflow_id}/cancel").status_code == 200

    assert seen.wait(PROMPTLY)
    wait_until(lambda: pools(client), (0, 0), within=PROMPTLY)
    assert client.get(f"/workflow/{workflow_id}").json()["status"] == "CANCELLED"


def too_busy(response: Any, what: str) -> None:
    """`response` is the 429 of a command refused while `what` wait for a thread."""
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert response.json() == {
        "error": "too_busy",
        "detail": f"2 {what} are waiting for a worker thread, the limit is 2 "
        "(MAX_QUEUED_STEPS); nothing was recorded, try again in 1 s",
    }


def test_commands_that_add_steps_get_429_while_too_many_wait_and_accepted_ones_finish(
    client: TestClient,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
    gate: threading.Event,
    settle: Callable[[int], dict[str, Any]],
) -> None:
    registry.register(State.INIT, blocking_task)
    manual = client.post("/workflow/start", json={"name": "m", "auto_start": False}).json()
    created = client.post("/workflows", json={"name": "c"}).json()
    accepted = [client.post("/workflow/start", json={"name": f"w{n}"}) for n in range(3)]
    assert [r.status_code for r in accepted] == [201, 201, 201]  # one runs, two wait
    assert entered.wait(DEADLINE)
    head = client.get("/health").json()["log_position"]

    too_busy(client.post("/workflow/start", json={"name": "more"}), "steps")
    too_busy(client.post(f"/workflow/{manual['workflow_id']}/next"), "steps")
    execution = f"/execution/workflows/{created['workflow_id']}/start"
    too_busy(client.post(execution), "steps")
    assert client.get("/health").json()["log_position"] == head
    # Commands that add no work are still served.
    assert client.post("/workflows", json={"name": "later"}).status_code == 201
    assert client.post(f"/workflow/{manual['workflow_id']}/cancel").status_code == 200

    gate.set()
    for response in accepted:
        assert settle(response.json()["workflow_id"])["status"] == "COMPLETE"
    assert client.post(execution).status_code == 200


def test_new_tasks_get_429_while_too_many_runs_wait(client: TestClient) -> None:
    naps = [sleep_task(client, f"nap {n}") for n in range(3)]  # one runs, two wait
    wait_until(lambda: pools(client), (0, 1))

    too_busy(client.post("/tasks", json={"name": "more", "task_type": "compute"}), "task runs")
    started = client.post("/workflow/start", json={"name": "steps are not held back"})
    assert started.status_code == 201

    for task_id in naps:
        assert client.delete(f"/tasks/{task_id}").status_code == 204
    wait_until(lambda: pools(client), (0, 0))
    assert client.post("/tasks", json={"name": "now", "task_type": "compute"}).status_code == 201
