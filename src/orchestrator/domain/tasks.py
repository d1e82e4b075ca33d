"""Standalone tasks: small jobs (`sleep`, `compute`, ...) with an event stream of their own.

A task is created PENDING and stays PENDING while its run waits in the worker pool's queue; it is
RUNNING from the moment a worker thread picks the run up (`started_at`), and ends COMPLETED,
FAILED or CANCELLED. A failed run is retried while `retry_count < max_retries`. Pure, like the
workflow.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any

import msgspec

from orchestrator.domain.errors import InvalidTransition, TaskNotFound
from orchestrator.domain.upcasting import CURRENT_SCHEMA, upcast


class TaskStatus(enum.Enum):
    """Where a standalone task is."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


ACTIVE_STATUSES = frozenset({TaskStatus.PENDING, TaskStatus.RUNNING})


class _TaskEventBase(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    at: datetime


class TaskCreated(_TaskEventBase, frozen=True, kw_only=True, tag=True):
    """Recorded by `POST /tasks`: the first event of every task stream."""

    task_id: int
    workflow_id: int | None = None
    name: str
    task_type: str
    description: str | None = None
    config: dict[str, Any] = {}
    max_retries: int = 0


class TaskRunStarted(_TaskEventBase, frozen=True, kw_only=True, tag=True):
    """Recorded just before a run of the task is handed to the worker pool (it is queued)."""

    attempt: int


class TaskRunPickedUp(_TaskEventBase, frozen=True, kw_only=True, tag=True):
    """Recorded when a worker thread begins the queued run: the task is RUNNING from then on.

    Logs written before this event existed go straight from TaskRunStarted to the outcome.
    """

    attempt: int


class TaskRunSucceeded(_TaskEventBase, frozen=True, kw_only=True, tag=True):
    """Recorded when a run returned; the task is COMPLETED."""

    result: dict[str, Any]
    duration: float = 0.0


class TaskRunFailed(_TaskEventBase, frozen=True, kw_only=True, tag=True):
    """Recorded when a run raised or timed out; `will_retry` says whether another run follows."""

    error: str
    duration: float = 0.0
    timed_out: bool = False
    will_retry: bool = False


class TaskCancelled(_TaskEventBase, frozen=True, kw_only=True, tag=True):
    """Recorded when a pending or running task is stopped; a late result is discarded."""


class TaskDeleted(_TaskEventBase, frozen=True, kw_only=True, tag=True):
    """Tombstone: the task disappears from reads; its history stays in the log."""


TaskEvent = (
    TaskCreated
    | TaskRunStarted
    | TaskRunPickedUp
    | TaskRunSucceeded
    | TaskRunFailed
    | TaskCancelled
    | TaskDeleted
)

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[TaskEvent] = msgspec.json.Decoder(TaskEvent)


def encode_task_event(event: TaskEvent) -> bytes:
    """The event as stored JSON bytes."""
    return _encoder.encode(event)


def decode_task_event(data: bytes, schema_version: int = CURRENT_SCHEMA) -> TaskEvent:
    """An event back from its stored JSON bytes, upcast from an older schema if need be."""
    return _decoder.decode(upcast(data, schema_version))


def task_stream_id(task_id: int) -> str:
    """The log stream that holds one task's events."""
    return f"task-{task_id}"


class Task(msgspec.Struct, frozen=True, kw_only=True):
    """Everything known about one standalone task after folding its events."""

    task_id: int
    workflow_id: int | None
    name: str
    task_type: str
    description: str | None
    config: dict[str, Any]
    max_retries: int
    version: int = 0
    status: TaskStatus = TaskStatus.PENDING
    result: dict[str, Any] | None = None
    error: str | None = None
    retry_count: int = 0
    attempt: int = 0
    #: True from TaskRunStarted until that run's outcome (or the task's cancellation): a run is
    #: queued (PENDING) or in a worker (RUNNING), and only its outcome may be recorded.
    in_run: bool = False
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False

    def needs_run(self) -> bool:
        """True when the engine should start (or, after a crash, restart) a run."""
        return not self.deleted and self.status in ACTIVE_STATUSES


class CreateTask(msgspec.Struct, frozen=True, kw_only=True):
    """Create a task; the engine runs it at once."""

    task_id: int
    workflow_id: int | None = None
    name: str
    task_type: str
    description: str | None = None
    config: dict[str, Any] = {}
    max_retries: int = 0


class BeginTaskRun(msgspec.Struct, frozen=True, kw_only=True):
    """Start a run of a pending task."""


class PickUpTaskRun(msgspec.Struct, frozen=True, kw_only=True):
    """Record that a worker thread began the queued run."""

    attempt: int


class FinishTaskRun(msgspec.Struct, frozen=True, kw_only=True):
    """Record the result of the running run."""

    attempt: int
    result: dict[str, Any]
    duration: float = 0.0


class FailTaskRun(msgspec.Struct, frozen=True, kw_only=True):
    """Record that the running run raised or timed out."""

    attempt: int
    error: str
    duration: float = 0.0
    timed_out: bool = False
    #: The task said another run cannot help (it raised NoRetry): no retry, whatever is left.
    final: bool = False


class DeleteTask(msgspec.Struct, frozen=True, kw_only=True):
    """Stop the task if it is pending or running, then hide it from reads."""


TaskCommand = CreateTask | BeginTaskRun | PickUpTaskRun | FinishTaskRun | FailTaskRun | DeleteTask


def evolve_task(task: Task | None, event: TaskEvent) -> Task:
    """The task after `event` (TaskCreated creates it)."""
    if isinstance(event, TaskCreated):
        return Task(
            task_id=event.task_id,
            workflow_id=event.workflow_id,
            name=event.name,
            task_type=event.task_type,
            description=event.description,
            config=event.config,
            max_retries=event.max_retries,
            version=1,
            created_at=event.at,
            updated_at=event.at,
        )
    if task is None:
        raise ValueError(f"a task stream must begin with TaskCreated, not {event!r}")
    replace = msgspec.structs.replace
    version = task.version + 1
    if isinstance(event, TaskRunStarted):
        return replace(
            task,
            version=version,
            status=TaskStatus.PENDING,
            attempt=event.attempt,
            in_run=True,
            updated_at=event.at,
        )
    if isinstance(event, TaskRunPickedUp):
        return replace(
            task,
            version=version,
            status=TaskStatus.RUNNING,
            started_at=task.started_at or event.at,
            updated_at=event.at,
        )
    if isinstance(event, TaskRunSucceeded | TaskRunFailed):
        # A log without TaskRunPickedUp (written before it existed) still gets a start time:
        # the run began `duration` seconds before its outcome.
        started_at = task.started_at or event.at - timedelta(seconds=event.duration)
        result: dict[str, Any] | None
        if isinstance(event, TaskRunSucceeded):
            status, result, error = TaskStatus.COMPLETED, event.result, None
        elif event.will_retry:
            status, result, error = TaskStatus.PENDING, task.result, event.error
        else:
            status, result, error = TaskStatus.FAILED, task.result, event.error
        retrying = isinstance(event, TaskRunFailed) and event.will_retry
        return replace(
            task,
            version=version,
            status=status,
            result=result,
            error=error,
            in_run=False,
            started_at=started_at,
            retry_count=task.retry_count + 1 if retrying else task.retry_count,
            completed_at=task.completed_at if retrying else event.at,
            updated_at=event.at,
        )
    if isinstance(event, TaskCancelled):
        return replace(
            task,
            version=version,
            status=TaskStatus.CANCELLED,
            in_run=False,
            completed_at=event.at,
            updated_at=event.at,
        )
    if isinstance(event, TaskDeleted):
        return replace(task, version=version, deleted=True, updated_at=event.at)
    raise TypeError(f"unknown task event {event!r}")


def decide_task(task: Task | None, command: TaskCommand, now: datetime) -> list[TaskEvent]:
    """The events that carry out `command`, or an error saying why it is refused."""
    if isinstance(command, CreateTask):
        if task is not None:
            raise _refuse(task, "create")
        return [
            TaskCreated(
                at=now,
                task_id=command.task_id,
                workflow_id=command.workflow_id,
                name=command.name,
                task_type=command.task_type,
                description=command.description,
                config=command.config,
                max_retries=command.max_retries,
            )
        ]
    if task is None or task.deleted:
        raise TaskNotFound(task.task_id if task else 0)
    if isinstance(command, BeginTaskRun):
        if task.status is not TaskStatus.PENDING or task.in_run:
            raise _refuse(task, "start a run")
        return [TaskRunStarted(at=now, attempt=task.attempt + 1)]
    if isinstance(command, PickUpTaskRun):
        queued = task.in_run and task.status is TaskStatus.PENDING
        if not queued or task.attempt != command.attempt:
            raise _refuse(task, f"record that run {command.attempt} was picked up")
        return [TaskRunPickedUp(at=now, attempt=command.attempt)]
    if isinstance(command, FinishTaskRun | FailTaskRun):
        # Only the run that is open now may record its outcome; a late one is discarded.
        if not task.in_run or task.attempt != command.attempt:
            raise _refuse(task, f"record the outcome of run {command.attempt}")
        if isinstance(command, FinishTaskRun):
            return [TaskRunSucceeded(at=now, result=command.result, duration=command.duration)]
        return [
            TaskRunFailed(
                at=now,
                error=command.error,
                duration=command.duration,
                timed_out=command.timed_out,
                will_retry=task.retry_count < task.max_retries and not command.final,
            )
        ]
    if isinstance(command, DeleteTask):
        events: list[TaskEvent] = []
        if task.status in ACTIVE_STATUSES:
            events.append(TaskCancelled(at=now))
        events.append(TaskDeleted(at=now))
        return events
    raise TypeError(f"unknown task command {command!r}")


def _refuse(task: Task, action: str) -> InvalidTransition:
    allowed = ["delete"]
    return InvalidTransition(task.task_id, task.status.value, action, allowed, kind="task")
