"""The task aggregate's runs: queued (pending) until a worker picks them up, then running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.domain.errors import InvalidTransition, TaskNotFound
from orchestrator.domain.legality import task_violation
from orchestrator.domain.tasks import (
    BeginTaskRun,
    CreateTask,
    DeleteTask,
    FailTaskRun,
    FinishTaskRun,
    PickUpTaskRun,
    Task,
    TaskCommand,
    TaskCreated,
    TaskEvent,
    TaskRunPickedUp,
    TaskRunStarted,
    TaskRunSucceeded,
    TaskStatus,
    decide_task,
    evolve_task,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def fold(events: list[TaskEvent]) -> Task:
    task: Task | None = None
    for event in events:
        assert task_violation(task, event) is None, event
        task = evolve_task(task, event)
    assert task is not None
    return task


def when(given: list[TaskEvent], command: TaskCommand, seconds: float) -> list[TaskEvent]:
    return given + decide_task(fold(given) if given else None, command, at(seconds))


def created(max_retries: int = 0) -> list[TaskEvent]:
    return decide_task(
        None,
        CreateTask(task_id=3, name="sum", task_type="compute", max_retries=max_retries),
        at(0),
    )


def test_a_queued_run_keeps_the_task_pending_with_no_start_time() -> None:
    events = when(created(), BeginTaskRun(), 0)

    task = fold(events)
    assert events[-1] == TaskRunStarted(at=at(0), attempt=1)
    assert (task.status, task.in_run, task.started_at) == (TaskStatus.PENDING, True, None)
    assert task.needs_run()


def test_the_pick_up_makes_the_task_running_from_that_moment() -> None:
    events = when(when(created(), BeginTaskRun(), 0), PickUpTaskRun(attempt=1), 2)

    task = fold(events)
    assert events[-1] == TaskRunPickedUp(at=at(2), attempt=1)
    assert (task.status, task.started_at) == (TaskStatus.RUNNING, at(2))


def test_a_run_picked_up_records_its_outcome_and_closes_the_run() -> None:
    running = when(when(created(), BeginTaskRun(), 0), PickUpTaskRun(attempt=1), 2)

    task = fold(when(running, FinishTaskRun(attempt=1, result={"n": 1}, duration=1.0), 3))

    assert (task.status, task.in_run, task.result) == (TaskStatus.COMPLETED, False, {"n": 1})
    assert (task.started_at, task.completed_at) == (at(2), at(3))


@pytest.mark.parametrize(
    "command",
    [PickUpTaskRun(attempt=2), FinishTaskRun(attempt=2, result={}), BeginTaskRun()],
    ids=["pick-up-of-another-run", "outcome-of-another-run", "second-run-while-one-is-open"],
)
def test_commands_for_a_run_that_is_not_the_open_one_are_refused(command: TaskCommand) -> None:
    queued = when(created(), BeginTaskRun(), 0)

    with pytest.raises(InvalidTransition):
        decide_task(fold(queued), command, at(1))


def test_a_pick_up_after_the_task_was_deleted_is_refused() -> None:
    deleted = when(when(created(), BeginTaskRun(), 0), DeleteTask(), 1)

    with pytest.raises(TaskNotFound):
        decide_task(fold(deleted), PickUpTaskRun(attempt=1), at(2))


def test_a_failed_run_with_retries_left_returns_to_pending_with_no_run_open() -> None:
    running = when(when(created(max_retries=1), BeginTaskRun(), 0), PickUpTaskRun(attempt=1), 1)

    task = fold(when(running, FailTaskRun(attempt=1, error="boom", duration=0.5), 2))

    assert (task.status, task.in_run, task.retry_count, task.error) == (
        TaskStatus.PENDING,
        False,
        1,
        "boom",
    )
    assert decide_task(task, BeginTaskRun(), at(3)) == [TaskRunStarted(at=at(3), attempt=2)]


def test_a_log_written_before_pick_ups_were_recorded_still_gets_a_start_time() -> None:
    older: list[TaskEvent] = [
        TaskCreated(at=at(0), task_id=3, name="sum", task_type="compute"),
        TaskRunStarted(at=at(0), attempt=1),
        TaskRunSucceeded(at=at(5), result={}, duration=1.5),
    ]

    task = fold(older)

    assert (task.status, task.started_at, task.completed_at) == (
        TaskStatus.COMPLETED,
        at(3.5),
        at(5),
    )


def test_verify_refuses_a_pick_up_with_no_run_queued() -> None:
    task = fold(created())

    assert task_violation(task, TaskRunPickedUp(at=at(1), attempt=1)) == (
        "run 1 picked up while PENDING"
    )
