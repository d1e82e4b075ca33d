"""Standalone tasks: small jobs (`sleep`, `compute`, ...) with an event stream of their own.

A task is created PENDING, runs in the worker pool (RUNNING), and ends COMPLETED, FAILED or
CANCELLED. A failed run is retried while `retry_count < max_retries`. Pure, like the workflow.
"""

from __future__ import annotations

import enum
from datetime import datetime
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
    """Recorded just before a run of the task is handed to the worker pool."""

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
    TaskCreated | TaskRunStarted | TaskRunSucceeded | TaskRunFailed | TaskCancelled | TaskDeleted
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


class DeleteTask(msgspec.Struct, frozen=True, kw_only=True):
    """Stop the task if it is pending or running, then hide it from reads."""


TaskCommand = CreateTask | BeginTaskRun | FinishTaskRun | FailTaskRun | DeleteTask


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
            status=TaskStatus.RUNNING,
            attempt=event.attempt,
            started_at=task.started_at or event.at,
            updated_at=event.at,
        )
    if isinstance(event, TaskRunSucceeded):
        return replace(
            task,
            version=version,
            status=TaskStatus.COMPLETED,
            result=event.result,
            error=None,
            completed_at=event.at,
            updated_at=event.at,
        )
    if isinstance(event, TaskRunFailed):
        if event.will_retry:
            return replace(
                task,
                version=version,
                status=TaskStatus.PENDING,
                error=event.error,
                retry_count=task.retry_count + 1,
                updated_at=event.at,
            )
        return replace(
            task,
            version=version,
            status=TaskStatus.FAILED,
            error=event.error,
            completed_at=event.at,
            updated_at=event.at,
        )
    if isinstance(event, TaskCancelled):
        return replace(
            task,
            version=version,
            status=TaskStatus.CANCELLED,
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
        if task.status is not TaskStatus.PENDING:
            raise _refuse(task, "start a run")
        return [TaskRunStarted(at=now, attempt=task.attempt + 1)]
    if isinstance(command, FinishTaskRun | FailTaskRun):
        # Only the run that is running now may record its outcome; a late one is discarded.
        if task.status is not TaskStatus.RUNNING or task.attempt != command.attempt:
            raise _refuse(task, f"record the outcome of run {command.attempt}")
        if isinstance(command, FinishTaskRun):
            return [TaskRunSucceeded(at=now, result=command.result, duration=command.duration)]
        return [
            TaskRunFailed(
                at=now,
                error=command.error,
                duration=command.duration,
                timed_out=command.timed_out,
                will_retry=task.retry_count < task.max_retries,
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
