"""What the API answers, as frozen msgspec Structs that mirror the server's response types.

They are declared here rather than imported from the server (`orchestrator.http`), so a
program that only talks to the API loads msgspec and httpx, not Starlette or the engine.
tests/client checks that every field here is one the server sends, of the same name.
Unknown fields are ignored when decoding, so a newer server that adds fields still works.
States and statuses stay plain strings for the same reason; `State` and `TaskStatus` name the
values this release knows.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import msgspec


class State(enum.StrEnum):
    """A workflow's state (and status), as the API spells it."""

    INIT = "INIT"
    PREPARE = "PREPARE"
    EXECUTE = "EXECUTE"
    VALIDATE = "VALIDATE"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


#: The states a workflow stays in until someone acts: `wait()` waits for these by default.
TERMINAL_STATES: frozenset[str] = frozenset({State.COMPLETE, State.FAILED, State.CANCELLED})


class TaskStatus(enum.StrEnum):
    """A standalone task's status: the original service's lower-case values."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded transition; `id` is its event's version in the workflow's stream."""

    id: int
    workflow_id: int
    from_state: str
    to_state: str
    trigger: str
    transition_metadata: dict[str, Any]
    timestamp: datetime
    created_at: datetime


class CurrentStep(msgspec.Struct, frozen=True, kw_only=True):
    """The step running now: its task, which attempt, and the progress its task reported."""

    state: str
    task: str | None
    started_at: datetime | None
    attempt: int
    progress: float | None
    progress_note: str | None
    progress_at: datetime | None
    next_attempt_at: datetime | None


class Workflow(msgspec.Struct, frozen=True, kw_only=True):
    """A workflow as GET /workflow/{id} shows it: the original fields, then additions."""

    workflow_id: int
    name: str
    description: str | None
    status: str
    current_state: str
    retries: int
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None
    next_trigger: str | None
    created_at: datetime | None
    transitions: list[Transition]
    task_results: dict[str, dict[str, Any]]
    id: int
    config: dict[str, Any]
    auto_start: bool
    launched: bool
    step_running: str | None
    allowed_actions: list[str]
    version: int
    updated_at: datetime | None
    #: None when no step runs.
    current_step: CurrentStep | None


class WorkflowStarted(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to POST /workflow/start."""

    message: str
    workflow_id: int
    name: str
    status: str
    current_state: str


class StepResult(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to next, cancel and launch: the state the workflow is in now."""

    message: str
    workflow_id: int
    current_state: str
    status: str


class RetryResult(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to retry."""

    message: str
    workflow_id: int
    retries: int
    current_state: str
    status: str


class ExecutionStatus(msgspec.Struct, frozen=True, kw_only=True):
    """GET /execution/workflows/{id}/status: a compact status (`transitions` is a count)."""

    workflow_id: int
    name: str
    status: str
    current_state: str
    retries: int
    launched: bool
    step_running: str | None
    next_trigger: str | None
    allowed_actions: list[str]
    transitions: int
    started_at: datetime | None
    completed_at: datetime | None
    error_message: str | None


class Task(msgspec.Struct, frozen=True, kw_only=True):
    """A standalone task; `status` is one of `TaskStatus`'s values."""

    id: int
    task_id: int
    workflow_id: int | None
    name: str
    task_type: str
    description: str | None
    config: dict[str, Any]
    status: str
    result: dict[str, Any] | None
    error: str | None
    error_message: str | None
    retry_count: int
    max_retries: int
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime | None


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One event of the log: `position` orders the whole log, `version` its stream."""

    position: int
    stream_id: str
    version: int
    type: str
    data: Any
    metadata: dict[str, Any]
    recorded_at: datetime
    schema_version: int
    hash: str


class EventPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of the log; pass `next_after` as `after` for the next one. `head` is the last
    position recorded when the page was read."""

    events: list[Event]
    next_after: int
    head: int


class PoolStats(msgspec.Struct, frozen=True, kw_only=True):
    """How busy a worker pool is."""

    max_workers: int
    active_tasks: int
    queue_size: int


class WorkflowCounts(msgspec.Struct, frozen=True, kw_only=True):
    """Workflows by state (deleted ones excluded)."""

    total: int
    init: int
    prepare: int
    execute: int
    validate: int
    complete: int
    failed: int
    cancelled: int


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    """GET /execution/stats: `worker_pool` runs workflow steps, `task_pool` standalone tasks."""

    worker_pool: PoolStats
    workflows: WorkflowCounts
    task_pool: PoolStats


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """GET /health: `healthy`, or `degraded` with the `reason` writes fail."""

    status: str
    version: str
    database: str
    log_position: int
    projection_position: int
    #: Events the answering server's read models have not applied yet.
    projection_lag: int
    #: Where servers share a PostgreSQL log: the answering one's part (see the server's docs).
    cluster: Cluster | None = None
    reason: str | None = None


class ActivityMinute(msgspec.Struct, frozen=True, kw_only=True):
    """One minute of GET /execution/activity."""

    minute: datetime
    started: int
    finished: int


class Activity(msgspec.Struct, frozen=True, kw_only=True):
    """GET /execution/activity: workflows started and finished per minute, oldest first;
    `complete` false while the counts do not reach the log's head yet (ask again)."""

    minutes: list[ActivityMinute]
    since: datetime
    until: datetime
    complete: bool
    position: int


class ProcessLeases(msgspec.Struct, frozen=True, kw_only=True):
    """A live server process on a shared log, and the leases it holds."""

    process: str
    leases: int
    seen_seconds_ago: float


class Cluster(msgspec.Struct, frozen=True, kw_only=True):
    """The servers sharing a PostgreSQL log, as /health reports them."""

    process: str
    projection_writer: bool
    leases_held: int
    processes: int | None = None
    lease_holders: list[ProcessLeases] | None = None


class ServiceInfo(msgspec.Struct, frozen=True, kw_only=True):
    """GET /: the service's name, version and links."""

    message: str
    name: str
    version: str
    docs: str
    openapi: str
    health: str


class TransitionRule(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the transition table."""

    from_state: str
    trigger: str
    to_state: str


class StepTask(msgspec.Struct, frozen=True, kw_only=True):
    """The task a state runs, where it comes from, and its limits."""

    state: str
    task: str
    source: str
    timeout: float
    retries: int
    is_async: bool


class StateMachine(msgspec.Struct, frozen=True, kw_only=True):
    """GET /state-machine: the states, triggers and transition table, as data."""

    states: list[str]
    triggers: list[str]
    initial_state: str
    final_states: list[str]
    forward_triggers: dict[str, str]
    tasks: dict[str, str]
    transitions: list[TransitionRule]
    steps: list[StepTask]
    task_types: list[str]
