"""The standalone task runner: a task created through it runs in the task pool and its outcome
is recorded once; failures, retries, timeouts and deletes, and what it refuses to record."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from orchestrator.domain.commands import StartWorkflow
from orchestrator.domain.errors import TaskNotFound, WorkflowNotFound
from orchestrator.domain.tasks import CreateTask, Task, TaskCreated, TaskRunFailed, TaskStatus
from orchestrator.engine import task_types
from orchestrator.engine.task_types import InvalidTaskConfig, TaskWork
from orchestrator.engine.tasks import TaskRegistry
from orchestrator.runtime import Runtime
from tests.engine.fake_tasks import TaskFailure
from tests.engine.harness import (
    engine_settings,
    eventually,
    only,
    quiesce,
    running,
    task_events,
    task_lines,
    wait_until,
)

pytestmark = pytest.mark.anyio


def create(task_type: str, config: dict[str, Any] | None = None, **fields: Any) -> CreateTask:
    """A CreateTask command (the runner picks the id)."""
    return CreateTask(task_id=0, name=task_type, task_type=task_type, config=config or {}, **fields)


async def latest(runtime: Runtime, task_id: int) -> Task:
    """The task folded from its stream."""
    task = await runtime.tasks.service.load(task_id, fresh=True)
    assert task is not None
    return task


class Flaky:
    """A task type whose first `failures` runs raise TaskFailure; it counts its runs."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs = 0
        self._lock = threading.Lock()

    def __call__(self, config: dict[str, Any]) -> TaskWork:
        def work() -> dict[str, Any]:
            with self._lock:
                self.runs += 1
                run = self.runs
            if run <= self.failures:
                raise TaskFailure(f"run {run} failed")
            return {"status": "done", "run": run}

        return work


def install(monkeypatch: pytest.MonkeyPatch, name: str, factory: task_types.WorkFactory) -> None:
    """Make `name` a task type for this test only."""
    monkeypatch.setitem(task_types.TASK_TYPES, name, factory)


async def test_a_task_created_through_the_runner_runs_and_completes_with_its_result(
    runtime: Runtime,
) -> None:
    outcome = await runtime.tasks.create(create("compute", {"iterations": 10}))

    created = outcome.task
    assert (created.task_id, created.version, created.status) == (1, 2, TaskStatus.PENDING)
    assert (created.in_run, created.attempt) == (True, 1)
    await quiesce(runtime)
    assert await task_lines(runtime, 1) == [
        "TaskCreated",
        "TaskRunStarted 1",
        "TaskRunPickedUp 1",
        "TaskRunSucceeded",
    ]
    task = await latest(runtime, 1)
    assert (task.status, task.in_run, task.error) == (TaskStatus.COMPLETED, False, None)
    assert task.result == {"status": "computed", "iterations": 10, "computation_result": 285}
    assert task.started_at is not None
    assert task.completed_at is not None
    stream = await runtime.store.read_stream("task-1")
    assert [(e.version, e.metadata["actor"], e.metadata["command"]) for e in stream] == [
        (1, "api", "CreateTask+BeginTaskRun"),
        (2, "api", "CreateTask+BeginTaskRun"),
        (3, "engine", "PickUpTaskRun"),
        (4, "engine", "FinishTaskRun"),
    ]


async def test_a_task_may_belong_to_a_workflow(runtime: Runtime) -> None:
    await runtime.coordinator.start(StartWorkflow(workflow_id=0, name="owner", auto_start=False))

    await runtime.tasks.create(create("compute", workflow_id=1))
    await quiesce(runtime)

    [created] = only(await task_events(runtime, 1), TaskCreated)
    assert created.workflow_id == 1
    assert (await latest(runtime, 1)).status is TaskStatus.COMPLETED


async def test_a_failing_task_is_recorded_failed_with_its_error(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = Flaky(failures=1)
    install(monkeypatch, "flaky", flaky)

    await runtime.tasks.create(create("flaky"))
    await quiesce(runtime)

    assert await task_lines(runtime, 1) == [
        "TaskCreated",
        "TaskRunStarted 1",
        "TaskRunPickedUp 1",
        "TaskRunFailed will_retry=False",
    ]
    task = await latest(runtime, 1)
    assert (task.status, task.error, task.result) == (
        TaskStatus.FAILED,
        "TaskFailure: run 1 failed",
        None,
    )
    assert not task.needs_run()
    assert flaky.runs == 1


async def test_a_failing_task_runs_again_while_it_has_retries_left(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = Flaky(failures=5)
    install(monkeypatch, "flaky", flaky)

    await runtime.tasks.create(create("flaky", max_retries=2))
    await quiesce(runtime)

    assert await task_lines(runtime, 1) == [
        "TaskCreated",
        "TaskRunStarted 1",
        "TaskRunPickedUp 1",
        "TaskRunFailed will_retry=True",
        "TaskRunStarted 2",
        "TaskRunPickedUp 2",
        "TaskRunFailed will_retry=True",
        "TaskRunStarted 3",
        "TaskRunPickedUp 3",
        "TaskRunFailed will_retry=False",
    ]
    task = await latest(runtime, 1)
    assert (task.status, task.retry_count, task.error) == (
        TaskStatus.FAILED,
        2,
        "TaskFailure: run 3 failed",
    )
    assert flaky.runs == 3


async def test_a_task_that_succeeds_on_a_retry_completes_with_its_error_cleared(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch, "flaky", Flaky(failures=1))

    await runtime.tasks.create(create("flaky", max_retries=3))
    await quiesce(runtime)

    assert (await task_lines(runtime, 1))[-3:] == [
        "TaskRunStarted 2",
        "TaskRunPickedUp 2",
        "TaskRunSucceeded",
    ]
    task = await latest(runtime, 1)
    assert (task.status, task.retry_count, task.error, task.result) == (
        TaskStatus.COMPLETED,
        1,
        None,
        {"status": "done", "run": 2},
    )


async def test_deleting_a_running_task_stops_it_and_discards_its_outcome(
    runtime: Runtime,
) -> None:
    await runtime.tasks.create(create("sleep", {"duration": 3600}))
    await eventually(
        lambda: task_lines(runtime, 1),
        lambda lines: "TaskRunPickedUp 1" in lines,
        what="the sleep to be picked up",
    )

    deleted = await runtime.tasks.delete(1)
    await quiesce(runtime)

    assert (deleted.task.status, deleted.task.deleted) == (TaskStatus.CANCELLED, True)
    await wait_until(lambda: runtime.task_pool.active_tasks == 0, what="the sleep's thread")
    assert await task_lines(runtime, 1) == [
        "TaskCreated",
        "TaskRunStarted 1",
        "TaskRunPickedUp 1",
        "TaskCancelled",
        "TaskDeleted",
    ]
    with pytest.raises(TaskNotFound):
        await runtime.tasks.delete(1)


async def test_deleting_a_finished_task_records_only_the_tombstone(runtime: Runtime) -> None:
    await runtime.tasks.create(create("compute"))
    await quiesce(runtime)

    await runtime.tasks.delete(1)

    assert (await task_lines(runtime, 1))[-2:] == ["TaskRunSucceeded", "TaskDeleted"]
    assert (await latest(runtime, 1)).status is TaskStatus.COMPLETED


async def test_a_run_past_the_task_timeout_fails_as_timed_out() -> None:
    async with running(engine_settings(task_timeout=0.05), TaskRegistry()) as runtime:
        await runtime.tasks.create(create("sleep", {"duration": 3600}))
        await quiesce(runtime)
        [failed] = only(await task_events(runtime, 1), TaskRunFailed)
        await wait_until(lambda: runtime.task_pool.active_tasks == 0, what="the sleep's thread")

    assert (failed.error, failed.timed_out, failed.will_retry) == (
        "task timed out after 0.05 s",
        True,
        False,
    )


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (create("teleport"), "task_type must be one of"),
        (create("sleep", {"duration": -1}), "config duration must be between 0 and 3600"),
        (create("compute", {"iterations": "lots"}), "config iterations must be an integer"),
    ],
    ids=["unknown-type", "bad-duration", "bad-iterations"],
)
async def test_a_task_that_could_never_run_is_refused_before_anything_is_recorded(
    runtime: Runtime, command: CreateTask, message: str
) -> None:
    with pytest.raises(InvalidTaskConfig, match=message):
        await runtime.tasks.create(command)

    assert await runtime.store.head_position() == 0


async def test_a_task_for_a_workflow_that_does_not_exist_is_refused(runtime: Runtime) -> None:
    with pytest.raises(WorkflowNotFound) as missing:
        await runtime.tasks.create(create("compute", workflow_id=5))

    assert missing.value.workflow_id == 5
    assert await runtime.store.head_position() == 0
