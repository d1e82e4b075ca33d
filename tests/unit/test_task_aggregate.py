"""The standalone task aggregate, command by command and state by state: given events, when a
command is decided, then these events (or this refusal); folding them yields this task.

tests/unit/test_task_runs.py covers the queued/picked-up distinction of a single run; this module
covers the whole table of (state, command) pairs and what folding their events gives.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from orchestrator.domain.aggregates import TASK
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
    TaskRunFailed,
    TaskRunStarted,
    TaskRunSucceeded,
    TaskStatus,
    decide_task,
    evolve_task,
)

TASK_ID = 3
START = datetime(2026, 1, 1, tzinfo=UTC)
#: The moment every command under test is decided at (later than any given event).
NOW = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)

CREATE = CreateTask(
    task_id=TASK_ID,
    workflow_id=7,
    name="sum",
    task_type="compute",
    description="adds squares",
    config={"iterations": 10},
    max_retries=0,
)


def at(seconds: float) -> datetime:
    """A fixed moment `seconds` after the task was created."""
    return START + timedelta(seconds=seconds)


def history(*commands: TaskCommand, max_retries: int = 0) -> list[TaskEvent]:
    """A task's stream after CREATE and `commands`, each decided one second after the last.

    Every event must be one `verify` accepts, so the histories are ones the engine can write.
    """
    create = msgspec.structs.replace(CREATE, max_retries=max_retries)
    events: list[TaskEvent] = []
    for second, command in enumerate((create, *commands)):
        task = TASK.fold(events)
        for event in decide_task(task, command, at(second)):
            assert task_violation(task, event) is None, event
            task = evolve_task(task, event)
            events.append(event)
    return events


def task_of(events: list[TaskEvent]) -> Task:
    """The folded task of a non-empty stream."""
    task = TASK.fold(events)
    assert task is not None
    return task


def run_to_failure(attempt: int) -> tuple[TaskCommand, ...]:
    """The commands of one run, begun, picked up and failed."""
    return BeginTaskRun(), PickUpTaskRun(attempt=attempt), FailTaskRun(attempt=attempt, error="x")


#: Streams of a task in each state a command can meet it in.
STATES: dict[str, Callable[[], list[TaskEvent]]] = {
    "created": lambda: history(),
    "queued": lambda: history(BeginTaskRun()),
    "running": lambda: history(BeginTaskRun(), PickUpTaskRun(attempt=1)),
    "retrying": lambda: history(*run_to_failure(1), max_retries=1),
    "completed": lambda: history(
        BeginTaskRun(), PickUpTaskRun(attempt=1), FinishTaskRun(attempt=1, result={"n": 1})
    ),
    "failed": lambda: history(*run_to_failure(1)),
    "deleted": lambda: history(BeginTaskRun(), DeleteTask()),
}


def commands_for(task: Task) -> dict[str, TaskCommand]:
    """Each command, addressed to the task's current (or last) run."""
    return {
        "create": CREATE,
        "begin": BeginTaskRun(),
        "pick_up": PickUpTaskRun(attempt=task.attempt),
        "finish": FinishTaskRun(attempt=task.attempt, result={"total": 285}, duration=0.5),
        "fail": FailTaskRun(attempt=task.attempt, error="boom", duration=0.5),
        "delete": DeleteTask(),
    }


COMMANDS = ("create", "begin", "pick_up", "finish", "fail", "delete")
IT, NF = InvalidTransition, TaskNotFound
STARTS, PICKS_UP = ("TaskRunStarted",), ("TaskRunPickedUp",)
SUCCEEDS, FAILS = ("TaskRunSucceeded",), ("TaskRunFailed",)
CANCELS, DELETES = ("TaskCancelled", "TaskDeleted"), ("TaskDeleted",)
# fmt: off
#: What each command does in each state: the event types it records, or the error it raises.
TABLE: dict[str, tuple[tuple[str, ...] | type[Exception], ...]] = {
    #             create  begin   pick_up   finish    fail   delete
    "created":   (IT,     STARTS, IT,       IT,       IT,    CANCELS),
    "queued":    (IT,     IT,     PICKS_UP, SUCCEEDS, FAILS, CANCELS),
    "running":   (IT,     IT,     IT,       SUCCEEDS, FAILS, CANCELS),
    "retrying":  (IT,     STARTS, IT,       IT,       IT,    CANCELS),
    "completed": (IT,     IT,     IT,       IT,       IT,    DELETES),
    "failed":    (IT,     IT,     IT,       IT,       IT,    DELETES),
    "deleted":   (IT,     NF,     NF,       NF,       NF,    NF),
}
#: The task after each accepted command: (status, in_run, attempt, deleted, needs_run).
AFTER: dict[tuple[str, str], tuple[TaskStatus, bool, int, bool, bool]] = {
    ("created", "begin"):    (TaskStatus.PENDING, True, 1, False, True),
    ("created", "delete"):   (TaskStatus.CANCELLED, False, 0, True, False),
    ("queued", "pick_up"):   (TaskStatus.RUNNING, True, 1, False, True),
    ("queued", "finish"):    (TaskStatus.COMPLETED, False, 1, False, False),
    ("queued", "fail"):      (TaskStatus.FAILED, False, 1, False, False),
    ("queued", "delete"):    (TaskStatus.CANCELLED, False, 1, True, False),
    ("running", "finish"):   (TaskStatus.COMPLETED, False, 1, False, False),
    ("running", "fail"):     (TaskStatus.FAILED, False, 1, False, False),
    ("running", "delete"):   (TaskStatus.CANCELLED, False, 1, True, False),
    ("retrying", "begin"):   (TaskStatus.PENDING, True, 2, False, True),
    ("retrying", "delete"):  (TaskStatus.CANCELLED, False, 1, True, False),
    ("completed", "delete"): (TaskStatus.COMPLETED, False, 1, True, False),
    ("failed", "delete"):    (TaskStatus.FAILED, False, 1, True, False),
}
# fmt: on
PAIRS = [(state, command) for state in STATES for command in COMMANDS]
ACCEPTED = [pair for pair in PAIRS if isinstance(TABLE[pair[0]][COMMANDS.index(pair[1])], tuple)]
REFUSED = [pair for pair in PAIRS if pair not in ACCEPTED]


def decided(state: str, command: str) -> tuple[list[TaskEvent], list[TaskEvent]]:
    """The given stream of `state`, and what `command` records on it at NOW."""
    given = STATES[state]()
    task = task_of(given)
    return given, decide_task(task, commands_for(task)[command], NOW)


def test_the_table_covers_every_pair_and_every_accepted_pair_has_its_fold() -> None:
    assert set(TABLE) == set(STATES)
    assert {len(row) for row in TABLE.values()} == {len(COMMANDS)}
    assert set(AFTER) == set(ACCEPTED)


@pytest.mark.parametrize(("state", "command"), ACCEPTED, ids=["-".join(p) for p in ACCEPTED])
def test_an_accepted_command_records_exactly_its_events(state: str, command: str) -> None:
    given, events = decided(state, command)

    assert tuple(type(event).__name__ for event in events) == TABLE[state][COMMANDS.index(command)]
    assert {event.at for event in events} == {NOW}
    task = task_of(given)
    for event in events:  # what decide records, verify accepts
        assert task_violation(task, event) is None, event
        task = evolve_task(task, event)


@pytest.mark.parametrize(("state", "command"), ACCEPTED, ids=["-".join(p) for p in ACCEPTED])
def test_folding_an_accepted_commands_events_yields_the_expected_task(
    state: str, command: str
) -> None:
    given, events = decided(state, command)

    task = task_of(given + events)

    assert (task.status, task.in_run, task.attempt, task.deleted, task.needs_run()) == AFTER[
        (state, command)
    ]
    assert (task.version, task.updated_at) == (len(given) + len(events), NOW)


@pytest.mark.parametrize(("state", "command"), REFUSED, ids=["-".join(p) for p in REFUSED])
def test_a_refused_command_raises_its_domain_error(state: str, command: str) -> None:
    given = STATES[state]()
    task = task_of(given)
    expected = TABLE[state][COMMANDS.index(command)]
    assert isinstance(expected, type)

    with pytest.raises(expected) as refused:
        decide_task(task, commands_for(task)[command], NOW)

    error = refused.value
    if isinstance(error, InvalidTransition):
        assert (error.kind, error.workflow_id, error.state, error.allowed) == (
            "task",
            TASK_ID,
            task.status.value,
            ["delete"],
        )
    else:
        assert isinstance(error, TaskNotFound)
        assert error.task_id == TASK_ID


# Creation --------------------------------------------------------------------------------------


def test_create_records_task_created_with_the_commands_fields() -> None:
    [created] = decide_task(None, CREATE, NOW)

    assert created == TaskCreated(at=NOW, **msgspec.structs.asdict(CREATE))


def test_folding_task_created_yields_a_pending_task_with_no_run() -> None:
    task = task_of(decide_task(None, CREATE, NOW))

    assert task == Task(
        **msgspec.structs.asdict(CREATE),
        version=1,
        status=TaskStatus.PENDING,
        created_at=NOW,
        updated_at=NOW,
    )
    assert (task.in_run, task.attempt, task.started_at, task.completed_at) == (False, 0, None, None)
    assert task.needs_run()


@pytest.mark.parametrize(
    "command",
    [
        BeginTaskRun(),
        PickUpTaskRun(attempt=1),
        FinishTaskRun(attempt=1, result={}),
        FailTaskRun(attempt=1, error="x"),
        DeleteTask(),
    ],
    ids=lambda command: type(command).__name__,
)
def test_commands_on_a_task_that_was_never_created_raise_task_not_found(
    command: TaskCommand,
) -> None:
    with pytest.raises(TaskNotFound):
        decide_task(None, command, NOW)


def test_a_stream_must_begin_with_task_created() -> None:
    with pytest.raises(ValueError, match="must begin with TaskCreated"):
        evolve_task(None, TaskRunStarted(at=NOW, attempt=1))


def test_a_refusal_names_the_task_its_status_and_what_is_allowed() -> None:
    completed = task_of(STATES["completed"]())

    with pytest.raises(InvalidTransition) as refused:
        decide_task(completed, BeginTaskRun(), NOW)

    assert str(refused.value) == "task 3 is COMPLETED; cannot start a run; allowed: delete"


# Outcomes --------------------------------------------------------------------------------------


def test_a_success_records_result_and_duration_and_ends_the_task() -> None:
    running = STATES["running"]()

    events = decide_task(
        task_of(running), FinishTaskRun(attempt=1, result={"total": 285}, duration=0.25), NOW
    )

    assert events == [TaskRunSucceeded(at=NOW, result={"total": 285}, duration=0.25)]
    task = task_of(running + events)
    assert (task.result, task.error, task.completed_at) == ({"total": 285}, None, NOW)
    assert task.started_at == at(2)  # when the run was picked up


def test_a_failure_with_no_retries_left_records_the_error_and_ends_the_task() -> None:
    running = STATES["running"]()

    events = decide_task(
        task_of(running), FailTaskRun(attempt=1, error="boom", duration=2.0, timed_out=True), NOW
    )

    assert events == [
        TaskRunFailed(at=NOW, error="boom", duration=2.0, timed_out=True, will_retry=False)
    ]
    task = task_of(running + events)
    assert (task.status, task.error, task.result) == (TaskStatus.FAILED, "boom", None)
    assert (task.retry_count, task.completed_at) == (0, NOW)


def test_a_failure_with_retries_left_will_retry_and_does_not_end_the_task() -> None:
    running = history(BeginTaskRun(), PickUpTaskRun(attempt=1), max_retries=1)

    events = decide_task(task_of(running), FailTaskRun(attempt=1, error="boom"), NOW)

    [failed] = events
    assert isinstance(failed, TaskRunFailed)
    assert failed.will_retry
    task = task_of(running + events)
    assert (task.status, task.retry_count, task.completed_at) == (TaskStatus.PENDING, 1, None)


def test_the_last_retry_failing_ends_the_task_failed_with_its_error() -> None:
    events = history(*run_to_failure(1), *run_to_failure(2), max_retries=1)

    failures = [event for event in events if isinstance(event, TaskRunFailed)]
    assert [failure.will_retry for failure in failures] == [True, False]
    task = task_of(events)
    assert (task.status, task.retry_count, task.attempt, task.in_run) == (
        TaskStatus.FAILED,
        1,
        2,
        False,
    )
    assert task.completed_at == at(6)


def test_a_retry_that_succeeds_clears_the_error_and_keeps_the_retry_count() -> None:
    events = history(
        *run_to_failure(1),
        BeginTaskRun(),
        PickUpTaskRun(attempt=2),
        FinishTaskRun(attempt=2, result={"ok": True}),
        max_retries=3,
    )

    task = task_of(events)
    assert (task.status, task.error, task.result, task.retry_count) == (
        TaskStatus.COMPLETED,
        None,
        {"ok": True},
        1,
    )
    assert task.started_at == at(2)  # the first run's pick-up: the task began then


def test_the_outcome_of_an_earlier_run_is_refused_once_a_later_run_is_open() -> None:
    second_run = history(*run_to_failure(1), BeginTaskRun(), max_retries=1)
    task = task_of(second_run)
    assert task.attempt == 2

    for late in (FinishTaskRun(attempt=1, result={}), FailTaskRun(attempt=1, error="late")):
        with pytest.raises(InvalidTransition, match="cannot record the outcome of run 1"):
            decide_task(task, late, NOW)


# Delete ----------------------------------------------------------------------------------------


def test_deleting_an_active_task_cancels_it_at_that_moment() -> None:
    running = STATES["running"]()

    task = task_of(running + decide_task(task_of(running), DeleteTask(), NOW))

    assert (task.status, task.completed_at, task.updated_at) == (TaskStatus.CANCELLED, NOW, NOW)


def test_deleting_a_finished_task_keeps_its_status_and_completion_time() -> None:
    completed = STATES["completed"]()

    task = task_of(completed + decide_task(task_of(completed), DeleteTask(), NOW))

    assert (task.status, task.completed_at, task.deleted) == (TaskStatus.COMPLETED, at(3), True)
    assert task.result == {"n": 1}
