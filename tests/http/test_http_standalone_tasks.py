"""Standalone tasks: POST/GET/DELETE /tasks, run in their own worker pool (TASK_WORKERS).

The built-in types are `compute` (the sum of i*i below `iterations`) and `sleep` (`duration`
seconds). Tests that need a task to stay running, or to fail, swap a type's factory in
`engine.task_types.TASK_TYPES` for the length of the test; its config checks stay the real ones.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from unittest.mock import ANY

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from orchestrator.domain.tasks import BeginTaskRun, CreateTask
from orchestrator.engine import task_types
from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.http.app import runtime_of
from orchestrator.runtime import Runtime
from tests.waiting import wait_for

DEADLINE = 5.0
BACKSTOP = 10.0
FINISHED = frozenset({"completed", "failed", "cancelled"})
#: How long the real `sleep` task deleted mid-run sleeps: long next to a DELETE, short for a test.
SLEEP_SECONDS = 1.0


def create_task(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    """POST /tasks, check the 201, and return the task it answers with."""
    response = client.post("/tasks", json=body)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def wait_for_task(client: TestClient, task_id: int, statuses: frozenset[str]) -> dict[str, Any]:
    """Poll GET /tasks/{id} until its status is one of `statuses`; return that body."""

    def read() -> dict[str, Any]:
        response = client.get(f"/tasks/{task_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return wait_for(
        read,
        lambda body: body["status"] in statuses,
        what=f"task {task_id} to reach {sorted(statuses)}",
        timeout=DEADLINE,
        interval=0.005,
    )


def wait_for_active_workers(client: TestClient, count: int) -> None:
    """Poll /execution/stats until exactly `count` standalone tasks run in worker threads."""
    wait_for(
        lambda: client.get("/execution/stats").json()["task_pool"]["active_tasks"],
        lambda active: bool(active == count),
        what=f"the pool to reach {count} active tasks",
        timeout=DEADLINE,
        interval=0.005,
    )


async def tasks_idle(runtime: Runtime) -> None:
    """Wait, within DEADLINE, until no standalone task is being driven."""
    async with asyncio.timeout(DEADLINE):
        await runtime.tasks.wait_idle()


def wait_until_no_task_runs(client: TestClient, app: Starlette) -> None:
    """Return once every standalone task's run has ended and its outcome has been handled."""
    assert client.portal is not None
    client.portal.call(tasks_idle, runtime_of(app))


def event_types(client: TestClient, app: Starlette, task_id: int) -> list[str]:
    """The types of the events in one task's stream, in order."""
    assert client.portal is not None
    recorded = client.portal.call(runtime_of(app).store.read_stream, f"task-{task_id}")
    return [event.type for event in recorded]


def listed_task_ids(client: TestClient, query: str = "") -> list[int]:
    """The ids GET /tasks answers with for `query`."""
    response = client.get(f"/tasks{query}")
    assert response.status_code == 200, response.text
    return [task["task_id"] for task in response.json()]


def create_workflow(client: TestClient, name: str) -> int:
    """POST /workflows and return the new workflow's id."""
    response = client.post("/workflows", json={"name": name})
    assert response.status_code == 201, response.text
    workflow_id = response.json()["workflow_id"]
    assert isinstance(workflow_id, int)
    return workflow_id


@pytest.fixture
def gated_sleep(
    monkeypatch: pytest.MonkeyPatch, gate: threading.Event, entered: threading.Event
) -> None:
    """`sleep` tasks check their config as usual, then run until the test sets `gate`."""
    real = task_types.TASK_TYPES["sleep"]

    def factory(config: dict[str, Any]) -> task_types.TaskWork:
        real(config)

        def work() -> dict[str, Any]:
            entered.set()
            if not gate.wait(BACKSTOP):
                raise TimeoutError("the test never opened the gate")
            return {"status": "released"}

        return work

    monkeypatch.setitem(task_types.TASK_TYPES, "sleep", factory)


@pytest.fixture
def flaky_compute(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """`compute` runs that raise while fewer than config `fail_times` runs have been made.

    Yields the list of attempt numbers made so far (one entry per run, across all tasks).
    """
    attempts: list[int] = []
    real = task_types.TASK_TYPES["compute"]

    def factory(config: dict[str, Any]) -> task_types.TaskWork:
        compute = real(config)
        fail_times = config.get("fail_times", 0)

        def work() -> dict[str, Any]:
            attempts.append(len(attempts) + 1)
            if len(attempts) <= fail_times:
                raise RuntimeError(f"boom on attempt {len(attempts)}")
            return compute()

        return work

    monkeypatch.setitem(task_types.TASK_TYPES, "compute", factory)
    yield attempts


# POST /tasks and running -----------------------------------------------------------------------


def test_create_answers_201_with_the_task_pending_until_a_worker_picks_it_up(
    client: TestClient,
) -> None:
    response = client.post(
        "/tasks",
        json={
            "name": "squares",
            "task_type": "compute",
            "description": "sum of squares",
            "config": {"iterations": 10},
        },
    )

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "id": 1,
        "task_id": 1,
        "workflow_id": None,
        "name": "squares",
        "task_type": "compute",
        "description": "sum of squares",
        "config": {"iterations": 10},
        "status": "pending",
        "result": None,
        "error": None,
        "error_message": None,
        "retry_count": 0,
        "max_retries": 0,
        "created_at": ANY,
        "started_at": None,
        "completed_at": None,
        "updated_at": ANY,
    }


@pytest.mark.parametrize("iterations", [0, 1, 10, 20_000])
def test_a_compute_task_completes_with_the_sum_of_squares(
    client: TestClient, iterations: int
) -> None:
    task_id = create_task(
        client, {"name": "squares", "task_type": "compute", "config": {"iterations": iterations}}
    )["task_id"]

    body = wait_for_task(client, task_id, FINISHED)

    assert body["status"] == "completed"
    assert body["result"] == {
        "status": "computed",
        "iterations": iterations,
        "computation_result": sum(i * i for i in range(iterations)),
    }
    assert body["error"] is None
    created_at, started_at, completed_at = (
        datetime.fromisoformat(body[key]) for key in ("created_at", "started_at", "completed_at")
    )
    assert created_at <= started_at <= completed_at


def test_a_compute_task_without_config_runs_1000_iterations(client: TestClient) -> None:
    task_id = create_task(client, {"name": "default", "task_type": "compute"})["task_id"]

    body = wait_for_task(client, task_id, FINISHED)

    assert body["config"] == {}
    assert body["result"]["iterations"] == 1000
    assert body["result"]["computation_result"] == sum(i * i for i in range(1000))


def test_a_short_sleep_task_completes(client: TestClient) -> None:
    task_id = create_task(
        client, {"name": "nap", "task_type": "sleep", "config": {"duration": 0.01}}
    )["task_id"]

    body = wait_for_task(client, task_id, FINISHED)

    assert body["status"] == "completed"
    assert body["result"] == {"status": "slept", "duration": 0.01}
    assert body["completed_at"] is not None


def test_max_retries_is_echoed_and_a_first_time_success_counts_no_retry(
    client: TestClient,
) -> None:
    created = create_task(client, {"name": "sure", "task_type": "compute", "max_retries": 3})

    body = wait_for_task(client, created["task_id"], FINISHED)

    assert (created["max_retries"], created["retry_count"]) == (3, 0)
    assert (body["status"], body["max_retries"], body["retry_count"]) == ("completed", 3, 0)


def test_a_failing_run_is_retried_up_to_max_retries_and_then_succeeds(
    client: TestClient, flaky_compute: list[int]
) -> None:
    task_id = create_task(
        client,
        {
            "name": "flaky",
            "task_type": "compute",
            "config": {"iterations": 4, "fail_times": 2},
            "max_retries": 2,
        },
    )["task_id"]

    body = wait_for_task(client, task_id, FINISHED)

    assert flaky_compute == [1, 2, 3]
    assert (body["status"], body["retry_count"], body["max_retries"]) == ("completed", 2, 2)
    assert body["result"] == {"status": "computed", "iterations": 4, "computation_result": 14}
    assert body["error"] is None


def test_a_task_that_fails_more_often_than_max_retries_ends_failed_with_its_error(
    client: TestClient, flaky_compute: list[int]
) -> None:
    task_id = create_task(
        client,
        {"name": "doomed", "task_type": "compute", "config": {"fail_times": 5}, "max_retries": 1},
    )["task_id"]

    body = wait_for_task(client, task_id, FINISHED)

    assert flaky_compute == [1, 2]
    assert (body["status"], body["retry_count"], body["max_retries"]) == ("failed", 1, 1)
    assert body["error"] == "RuntimeError: boom on attempt 2"
    assert body["result"] is None
    assert body["completed_at"] is not None


def test_a_failing_task_without_retries_fails_at_once(
    client: TestClient, flaky_compute: list[int]
) -> None:
    task_id = create_task(
        client, {"name": "once", "task_type": "compute", "config": {"fail_times": 1}}
    )["task_id"]

    body = wait_for_task(client, task_id, FINISHED)

    assert flaky_compute == [1]
    assert (body["status"], body["retry_count"], body["error"]) == (
        "failed",
        0,
        "RuntimeError: boom on attempt 1",
    )


def test_a_task_may_belong_to_a_workflow(client: TestClient) -> None:
    workflow_id = create_workflow(client, "owner")

    created = create_task(
        client, {"name": "child", "task_type": "compute", "workflow_id": workflow_id}
    )

    assert created["workflow_id"] == workflow_id
    body = wait_for_task(client, created["task_id"], FINISHED)
    assert body["workflow_id"] == workflow_id
    assert client.get(f"/workflows/{workflow_id}/tasks").json() == [body]


# Refused tasks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("task_type", ["bogus", "COMPUTE", "", 3, None])
def test_an_unknown_task_type_is_a_validation_error_naming_the_field(
    client: TestClient, task_type: object
) -> None:
    response = client.post("/tasks", json={"name": "t", "task_type": task_type})

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["detail"].startswith("invalid request body: ")
    assert "$.task_type" in body["detail"]


def test_a_missing_task_type_is_a_validation_error_naming_the_field(client: TestClient) -> None:
    response = client.post("/tasks", json={"name": "t"})

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert "`task_type`" in response.json()["detail"]


@pytest.mark.parametrize(
    ("task_type", "config", "detail"),
    [
        ("compute", {"iterations": "x"}, "config iterations must be an integer, got 'x'"),
        ("compute", {"iterations": 1.5}, "config iterations must be an integer, got 1.5"),
        ("compute", {"iterations": True}, "config iterations must be an integer, got True"),
        (
            "compute",
            {"iterations": -1},
            "config iterations must be between 0 and 100000000, got -1",
        ),
        (
            "compute",
            {"iterations": 100_000_001},
            "config iterations must be between 0 and 100000000, got 100000001",
        ),
        (
            "sleep",
            {"duration": 99999},
            "config duration must be between 0 and 3600 seconds, got 99999",
        ),
        (
            "sleep",
            {"duration": -0.5},
            "config duration must be between 0 and 3600 seconds, got -0.5",
        ),
        ("sleep", {"duration": "long"}, "config duration must be a number, got 'long'"),
        ("sleep", {"duration": None}, "config duration must be a number, got None"),
    ],
    ids=[
        "iterations-string",
        "iterations-fraction",
        "iterations-bool",
        "iterations-negative",
        "iterations-too-many",
        "duration-too-long",
        "duration-negative",
        "duration-string",
        "duration-null",
    ],
)
def test_a_bad_config_is_a_validation_error_naming_the_field(
    client: TestClient, task_type: str, config: dict[str, Any], detail: str
) -> None:
    response = client.post("/tasks", json={"name": "t", "task_type": task_type, "config": config})

    assert response.status_code == 422
    assert response.json() == {"error": "validation_error", "detail": detail}


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("max_retries", 11, "<= 10"),
        ("max_retries", -1, ">= 0"),
        ("workflow_id", 0, ">= 1"),
        ("config", [1], "got `array`"),
        ("name", "", "length >= 1"),
    ],
)
def test_a_bad_field_is_a_validation_error_naming_it(
    client: TestClient, field: str, value: object, reason: str
) -> None:
    response = client.post("/tasks", json={"name": "t", "task_type": "sleep", field: value})

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert f"$.{field}" in body["detail"]
    assert reason in body["detail"]


def test_a_refused_task_is_not_created(client: TestClient) -> None:
    bad = {"name": "t", "task_type": "compute", "config": {"iterations": -1}}
    assert client.post("/tasks", json=bad).status_code == 422
    assert client.post("/tasks", json={"name": "t", "task_type": "nope"}).status_code == 422

    assert listed_task_ids(client) == []
    assert create_task(client, {"name": "first", "task_type": "compute"})["task_id"] == 1


def test_a_task_for_an_unknown_workflow_is_not_found(client: TestClient) -> None:
    response = client.post("/tasks", json={"name": "t", "task_type": "compute", "workflow_id": 99})

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "workflow 99 does not exist"}
    assert listed_task_ids(client) == []


def test_a_task_for_a_deleted_workflow_is_not_found(client: TestClient) -> None:
    workflow_id = create_workflow(client, "gone")
    assert client.delete(f"/workflows/{workflow_id}").status_code == 204

    response = client.post(
        "/tasks", json={"name": "t", "task_type": "compute", "workflow_id": workflow_id}
    )

    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "detail": f"workflow {workflow_id} does not exist",
    }


# GET /tasks and GET /tasks/{id} ----------------------------------------------------------------


def test_a_task_reads_back_as_the_list_shows_it(client: TestClient) -> None:
    task_id = create_task(client, {"name": "read me", "task_type": "compute"})["task_id"]
    finished = wait_for_task(client, task_id, FINISHED)

    assert client.get("/tasks").json() == [finished]
    assert client.get(f"/tasks/{task_id}").json() == finished


def test_the_task_list_is_in_id_order_and_pages(client: TestClient) -> None:
    ids = [create_task(client, {"name": f"t{n}", "task_type": "compute"})["id"] for n in range(5)]

    assert listed_task_ids(client) == ids == [1, 2, 3, 4, 5]
    assert listed_task_ids(client, "?skip=1&limit=2") == [2, 3]
    assert listed_task_ids(client, "?skip=4&limit=2") == [5]
    assert listed_task_ids(client, "?skip=5") == []


def test_the_task_list_filters_by_workflow_and_by_status(
    client: TestClient,
    gated_sleep: None,
    flaky_compute: list[int],
    entered: threading.Event,
    gate: threading.Event,
) -> None:
    first = create_workflow(client, "first")
    second = create_workflow(client, "second")
    done_first = create_task(client, {"name": "a", "task_type": "compute", "workflow_id": first})
    failed_first = create_task(
        client,
        {"name": "b", "task_type": "compute", "workflow_id": first, "config": {"fail_times": 2}},
    )
    done_second = create_task(client, {"name": "c", "task_type": "compute", "workflow_id": second})
    running = create_task(client, {"name": "d", "task_type": "sleep", "workflow_id": first})
    loose = create_task(client, {"name": "e", "task_type": "compute"})
    assert entered.wait(DEADLINE)
    for task in (done_first, failed_first, done_second, loose):
        wait_for_task(client, task["task_id"], FINISHED)

    assert listed_task_ids(client, f"?workflow_id={first}") == [
        done_first["task_id"],
        failed_first["task_id"],
        running["task_id"],
    ]
    assert listed_task_ids(client, f"?workflow_id={second}") == [done_second["task_id"]]
    assert listed_task_ids(client, "?status=completed") == [
        done_first["task_id"],
        done_second["task_id"],
        loose["task_id"],
    ]
    assert listed_task_ids(client, "?status=failed") == [failed_first["task_id"]]
    assert listed_task_ids(client, "?status=running") == [running["task_id"]]
    assert listed_task_ids(client, f"?workflow_id={first}&status=completed") == [
        done_first["task_id"]
    ]
    assert listed_task_ids(client, f"?workflow_id={second}&status=running") == []
    assert listed_task_ids(client, "?workflow_id=12345") == []
    gate.set()
    assert wait_for_task(client, running["task_id"], FINISHED)["result"] == {"status": "released"}
    assert listed_task_ids(client, "?status=running") == []


def test_an_unknown_status_is_refused_naming_the_allowed_ones(client: TestClient) -> None:
    response = client.get("/tasks?status=DONE")

    assert response.status_code == 422
    assert response.json() == {
        "error": "validation_error",
        "detail": "status must be one of pending, running, completed, failed, cancelled; "
        "got 'DONE'",
    }


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("workflow_id=0", "$.workflow_id"),
        ("workflow_id=x", "$.workflow_id"),
        ("limit=0", "$.limit"),
    ],
)
def test_a_bad_task_list_parameter_is_refused_naming_it(
    client: TestClient, query: str, field: str
) -> None:
    response = client.get(f"/tasks?{query}")

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert field in response.json()["detail"]


def test_an_unknown_task_is_not_found(client: TestClient) -> None:
    response = client.get("/tasks/99")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "task 99 does not exist"}


# DELETE /tasks/{id} ----------------------------------------------------------------------------


def test_delete_of_a_finished_task_answers_204_and_takes_it_out_of_the_lists(
    client: TestClient,
) -> None:
    workflow_id = create_workflow(client, "owner")
    kept = create_task(client, {"name": "kept", "task_type": "compute"})["task_id"]
    task_id = create_task(
        client, {"name": "gone", "task_type": "compute", "workflow_id": workflow_id}
    )["task_id"]
    wait_for_task(client, task_id, FINISHED)

    response = client.delete(f"/tasks/{task_id}")

    assert response.status_code == 204
    assert response.content == b""
    assert listed_task_ids(client) == [kept]
    assert listed_task_ids(client, "?status=completed") == [kept]
    assert client.get(f"/workflows/{workflow_id}/tasks").json() == []


def test_a_deleted_task_is_not_found_afterwards(client: TestClient) -> None:
    task_id = create_task(client, {"name": "gone", "task_type": "compute"})["task_id"]
    wait_for_task(client, task_id, FINISHED)
    assert client.delete(f"/tasks/{task_id}").status_code == 204

    gone = {"error": "not_found", "detail": f"task {task_id} does not exist"}
    read = client.get(f"/tasks/{task_id}")
    again = client.delete(f"/tasks/{task_id}")

    assert (read.status_code, read.json()) == (404, gone)
    assert (again.status_code, again.json()) == (404, gone)


def test_delete_of_an_unknown_task_is_not_found(client: TestClient) -> None:
    response = client.delete("/tasks/99")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "task 99 does not exist"}


def test_delete_of_a_running_sleep_task_cancels_it_at_once(
    client: TestClient, app: Starlette
) -> None:
    task_id = create_task(
        client, {"name": "long nap", "task_type": "sleep", "config": {"duration": SLEEP_SECONDS}}
    )["task_id"]
    wait_for_active_workers(client, 1)
    running = wait_for_task(client, task_id, frozenset({"running"}))
    assert running["started_at"] is not None

    began = time.monotonic()
    response = client.delete(f"/tasks/{task_id}")
    took = time.monotonic() - began

    assert response.status_code == 204
    assert took < SLEEP_SECONDS / 2
    assert listed_task_ids(client) == []
    wait_until_no_task_runs(client, app)  # the sleep has ended and its result was handled
    assert listed_task_ids(client) == []
    assert listed_task_ids(client, "?status=completed") == []
    assert listed_task_ids(client, "?status=cancelled") == []
    assert event_types(client, app, task_id) == [
        "TaskCreated",
        "TaskRunStarted",
        "TaskRunPickedUp",
        "TaskCancelled",
        "TaskDeleted",
    ]
    wait_for_active_workers(client, 0)


def test_delete_of_a_running_task_discards_its_late_result(
    client: TestClient,
    app: Starlette,
    gated_sleep: None,
    entered: threading.Event,
    gate: threading.Event,
) -> None:
    kept = create_task(client, {"name": "kept", "task_type": "compute"})["task_id"]
    task_id = create_task(client, {"name": "held", "task_type": "sleep"})["task_id"]
    assert entered.wait(DEADLINE)

    assert client.delete(f"/tasks/{task_id}").status_code == 204
    gate.set()
    wait_until_no_task_runs(client, app)

    assert listed_task_ids(client) == [kept]
    assert "TaskRunSucceeded" not in event_types(client, app, task_id)
    assert event_types(client, app, task_id)[-2:] == ["TaskCancelled", "TaskDeleted"]


def test_a_driver_whose_read_of_the_task_fails_once_still_runs_it(
    app: Starlette, client: TestClient
) -> None:
    service = runtime_of(app).tasks.service
    real_load = service.load
    failures = {"left": 1}

    async def flaky_load(aggregate_id: int, *, fresh: bool = False) -> Any:
        if fresh and failures["left"]:
            failures["left"] -= 1
            raise StoreUnavailable("database is locked")
        return await real_load(aggregate_id, fresh=fresh)

    service.load = flaky_load  # type: ignore[method-assign]
    # A task recorded but not driven, then resumed as a restart resumes it: its driver starts
    # by reading the task (a driver started by the request knows it already).
    command = CreateTask(task_id=0, name="survives a failed read", task_type="compute", config={})
    assert client.portal is not None
    outcome = client.portal.call(service.create, command, {"actor": "test"}, [BeginTaskRun()])
    task_id = outcome.task.task_id

    async def resume() -> None:
        runtime_of(app).tasks.resume([task_id])

    client.portal.call(resume)

    body = wait_for_task(client, task_id, FINISHED)

    assert failures["left"] == 0
    assert body["status"] == "completed"
