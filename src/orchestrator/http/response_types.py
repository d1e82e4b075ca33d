"""Response bodies, as msgspec Structs: what the routes encode.

The same types encode answers and generate `/openapi.json`, so the document cannot drift from
what the routes send. conversions.py builds them from the read models.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import msgspec


class TaskState(enum.Enum):
    """A standalone task's status as the API shows it: the original's lower-case values."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class WorkflowStartedResponse(msgspec.Struct, kw_only=True):
    """201 answer to POST /workflow/start."""

    message: str
    workflow_id: int
    name: str
    status: str
    current_state: str


class TransitionOut(msgspec.Struct, kw_only=True):
    """One recorded transition; `timestamp` and `created_at` carry the same time.

    `id` is the version of the transition's event in the workflow's stream (unique within the
    workflow); `transition_metadata` holds that version and, for `fail`, the error.
    """

    id: int
    workflow_id: int
    from_state: str
    to_state: str
    trigger: str
    transition_metadata: dict[str, Any]
    timestamp: datetime
    created_at: datetime


class CurrentStep(msgspec.Struct, kw_only=True):
    """The step running now: its task, which attempt, and the progress its task last reported."""

    state: str
    task: str | None
    started_at: datetime | None
    #: 1 for the first attempt; more after failed ones while the task's `retries` allow.
    attempt: int
    #: From 0 to 1, as the task last reported it (`ctx.progress`); null until it does.
    progress: float | None
    progress_note: str | None
    progress_at: datetime | None
    #: After a failed attempt: when the next one begins.
    next_attempt_at: datetime | None


class WorkflowOut(msgspec.Struct, kw_only=True):
    """A workflow: the original fields first, then additions."""

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
    transitions: list[TransitionOut]
    task_results: dict[str, dict[str, Any]]
    id: int
    config: dict[str, Any]
    auto_start: bool
    launched: bool
    step_running: str | None
    allowed_actions: list[str]
    version: int
    updated_at: datetime | None
    current_step: CurrentStep | None


class StepResponse(msgspec.Struct, kw_only=True):
    """Answer to next, cancel and execution start."""

    message: str
    workflow_id: int
    current_state: str
    status: str


class RetryResponse(msgspec.Struct, kw_only=True):
    """Answer to retry."""

    message: str
    workflow_id: int
    retries: int
    current_state: str
    status: str


class ExecutionStatus(msgspec.Struct, kw_only=True):
    """GET /execution/workflows/{id}/status."""

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


class TaskOut(msgspec.Struct, kw_only=True):
    """A standalone task."""

    id: int
    task_id: int
    workflow_id: int | None
    name: str
    task_type: str
    description: str | None
    config: dict[str, Any]
    status: TaskState
    result: dict[str, Any] | None
    error: str | None
    #: The original's name for `error`.
    error_message: str | None
    retry_count: int
    max_retries: int
    created_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime | None


class EventOut(msgspec.Struct, kw_only=True):
    """One event of the log; `data` is the payload in the current schema."""

    position: int
    stream_id: str
    version: int
    type: str
    data: Any
    metadata: dict[str, Any]
    recorded_at: datetime
    schema_version: int
    hash: str


class EventPage(msgspec.Struct, kw_only=True):
    """GET /events: a page of the log; pass `next_after` as `after` for the next page."""

    events: list[EventOut]
    next_after: int
    head: int


class WorkerPoolStats(msgspec.Struct, kw_only=True):
    """How busy the worker pool is."""

    max_workers: int
    active_tasks: int
    queue_size: int


class WorkflowCounts(msgspec.Struct, kw_only=True):
    """Workflows by state (deleted ones excluded)."""

    total: int
    init: int
    prepare: int
    execute: int
    validate: int
    complete: int
    failed: int
    cancelled: int


class ExecutionStats(msgspec.Struct, kw_only=True):
    """GET /execution/stats: `worker_pool` runs workflow steps, `task_pool` standalone tasks."""

    worker_pool: WorkerPoolStats
    workflows: WorkflowCounts
    task_pool: WorkerPoolStats


class Health(msgspec.Struct, kw_only=True, omit_defaults=True):
    """GET /health: `healthy` (200), or `degraded` (503) with the reason writes fail."""

    status: str
    version: str
    database: str
    log_position: int
    projection_position: int
    #: Events committed to the log that this process's read models have not applied yet.
    projection_lag: int
    #: Where processes share the log (PostgreSQL): this process's part; left out otherwise.
    cluster: Cluster | None = None
    #: Why the service is degraded; left out while it is healthy.
    reason: str | None = None


class ProcessLeases(msgspec.Struct, kw_only=True):
    """A live server process on the shared log, and the leases it holds."""

    process: str
    leases: int
    #: Seconds since it last renewed its leases.
    seen_seconds_ago: float


class Cluster(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The processes sharing a PostgreSQL log, as /health reports them."""

    #: This process's name in the lease table (host:pid:random).
    process: str
    #: True if this process is the one applying the log to the read models.
    projection_writer: bool
    #: Leases (in-flight workflows and tasks) this process drives now.
    leases_held: int
    #: Live processes, this one included; None when they could not be read.
    processes: int | None = None
    #: Each live process and its lease count (left out for a caller without a token when
    #: API_TOKEN is set: it names hosts and process ids).
    lease_holders: list[ProcessLeases] | None = None


class ServiceInfo(msgspec.Struct, kw_only=True):
    """GET /."""

    message: str
    name: str
    version: str
    docs: str
    openapi: str
    health: str


class TransitionRow(msgspec.Struct, kw_only=True):
    """One row of the transition table."""

    from_state: str
    trigger: str
    to_state: str


class StepTaskRow(msgspec.Struct, kw_only=True):
    """The task a state runs: its name, module ("built-in" for the defaults), limits."""

    state: str
    task: str
    source: str
    #: Seconds an attempt may run (the server's TASK_TIMEOUT unless the task sets its own).
    timeout: float
    retries: int
    #: True for an `async def` task (it runs on the event loop, not in a worker thread).
    is_async: bool


class StateMachine(msgspec.Struct, kw_only=True):
    """GET /state-machine: the transition table as data."""

    states: list[str]
    triggers: list[str]
    initial_state: str
    final_states: list[str]
    forward_triggers: dict[str, str]
    tasks: dict[str, str]
    transitions: list[TransitionRow]
    #: How each state's task runs: where it comes from, its timeout and retries.
    steps: list[StepTaskRow]
    #: Every `task_type` POST /tasks takes: the built-in ones and the loaded modules'.
    task_types: list[str]


class ActivityMinute(msgspec.Struct, kw_only=True):
    """One minute of GET /execution/activity."""

    #: When the minute began (UTC).
    minute: datetime
    #: Workflows started (or created ones launched) in that minute.
    started: int
    #: Runs that reached COMPLETE, FAILED or CANCELLED in that minute.
    finished: int


class Activity(msgspec.Struct, kw_only=True):
    """GET /execution/activity: workflows started and finished per minute, oldest first,
    counted from the log (the current minute, still running, is the last)."""

    minutes: list[ActivityMinute]
    since: datetime
    until: datetime
    #: False while the counts do not reach the log's head yet (a very busy hour is read over
    #: several requests); ask again for the rest.
    complete: bool
    #: The last log position counted.
    position: int
