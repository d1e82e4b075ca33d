"""Request and response bodies and query parameters, as msgspec Structs.

The same types decode requests, encode responses and generate `/openapi.json`, so the document
cannot drift from what the routes do. Unknown body fields and query parameters are ignored, as
the original API (FastAPI/pydantic defaults) did.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

import msgspec

from orchestrator.domain.states import State
from orchestrator.domain.tasks import Task
from orchestrator.domain.transitions import next_trigger
from orchestrator.domain.workflow import Workflow, allowed_actions

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255, description="1..255 characters")]
Description = Annotated[str, msgspec.Meta(max_length=10_000)]
Config = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description="Free-form JSON object; integers must fit in 64 bits; depth <= 32; at most "
        "MAX_CONFIG_BYTES (64 KiB) as JSON and MAX_CONFIG_KEYS (1000) keys and array items"
    ),
]
Skip = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=1000)]
Id = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class TaskState(enum.Enum):
    """A standalone task's status as the API shows it: the original's lower-case values."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskType(enum.Enum):
    """The standalone task types (engine.task_types.TASK_TYPES, and http_request)."""

    COMPUTE = "compute"
    SLEEP = "sleep"
    HTTP_REQUEST = "http_request"


# Requests ---------------------------------------------------------------------------------------


class StartWorkflowRequest(msgspec.Struct, kw_only=True):
    """POST /workflow/start."""

    name: Name
    description: Description | None = None
    config: Config | None = None
    auto_start: bool = True


class CreateWorkflowRequest(msgspec.Struct, kw_only=True):
    """POST /workflows: the workflow waits in INIT until /execution/workflows/{id}/start."""

    name: Name
    description: Description | None = None
    config: Config | None = None


class UpdateWorkflowRequest(msgspec.Struct, kw_only=True):
    """PUT /workflows/{id}: fields left out keep their value."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    config: Config | msgspec.UnsetType | None = msgspec.UNSET


class CreateTaskRequest(msgspec.Struct, kw_only=True):
    """POST /tasks: a standalone task, run at once by the worker pool."""

    name: Name
    task_type: TaskType
    workflow_id: Id | None = None
    description: Description | None = None
    config: Config | None = None
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 0


class WorkflowListQuery(msgspec.Struct, kw_only=True):
    """GET /workflows query parameters."""

    skip: Skip = 0
    limit: Limit = 100
    status_filter: State | None = None


class TaskListQuery(msgspec.Struct, kw_only=True):
    """GET /tasks query parameters."""

    skip: Skip = 0
    limit: Limit = 100
    workflow_id: Id | None = None
    status: TaskState | None = None
    #: The original service's name for `status`; `status` wins when both are given.
    status_filter: TaskState | None = None


class WorkflowReadQuery(msgspec.Struct, kw_only=True):
    """GET /workflow/{id} query parameters: `at_version` reads the state after that event."""

    at_version: Id | None = None


class EventsQuery(msgspec.Struct, kw_only=True):
    """GET /events query parameters."""

    after: Skip = 0
    limit: Limit = 100
    type: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    stream: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class StreamQuery(msgspec.Struct, kw_only=True):
    """GET /events/stream query parameters (Last-Event-ID, when sent, wins over `after`)."""

    after: Skip | None = None


# Responses --------------------------------------------------------------------------------------


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
    #: Why the service is degraded; left out while it is healthy.
    reason: str | None = None


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


class StateMachine(msgspec.Struct, kw_only=True):
    """GET /state-machine: the transition table as data."""

    states: list[str]
    triggers: list[str]
    initial_state: str
    final_states: list[str]
    forward_triggers: dict[str, str]
    tasks: dict[str, str]
    transitions: list[TransitionRow]


# Conversions ------------------------------------------------------------------------------------


def workflow_out(workflow: Workflow) -> WorkflowOut:
    """The read model of one workflow as the API shows it."""
    trigger = next_trigger(workflow.state)
    return WorkflowOut(
        workflow_id=workflow.workflow_id,
        name=workflow.name,
        description=workflow.description,
        status=workflow.state.value,
        current_state=workflow.state.value,
        retries=workflow.retries,
        started_at=workflow.started_at,
        completed_at=workflow.completed_at,
        error_message=workflow.error_message,
        next_trigger=trigger.value if trigger else None,
        created_at=workflow.created_at,
        transitions=transitions_out(workflow),
        task_results=task_results_out(workflow),
        id=workflow.workflow_id,
        config=workflow.config,
        auto_start=workflow.auto_start,
        launched=workflow.launched,
        step_running=workflow.step.value if workflow.step else None,
        allowed_actions=allowed_actions(workflow),
        version=workflow.version,
        updated_at=workflow.updated_at,
    )


def transitions_out(workflow: Workflow) -> list[TransitionOut]:
    """The workflow's transitions as the API shows them."""
    return [
        TransitionOut(
            id=t.version,
            workflow_id=workflow.workflow_id,
            from_state=t.from_state.value,
            to_state=t.to_state.value,
            trigger=t.trigger.value,
            transition_metadata=(
                {"version": t.version}
                if t.reason is None
                else {"version": t.version, "error": t.reason}
            ),
            timestamp=t.at,
            created_at=t.at,
        )
        for t in workflow.transitions
    ]


#: The keys of the original worker's wrapper around a task result.
WRAPPER_KEYS = ("success", "result", "task_type")


def task_results_out(workflow: Workflow) -> dict[str, dict[str, Any]]:
    """Each state's result, readable both ways the original's clients read it.

    The original's documentation shows the flat result (`{"status": "prepared", ...}`) and its
    demo client reads the worker's wrapper (`{"success": true, "result": {...}, "task_type":
    "prepare"}`), so an entry is the flat result followed by the wrapper's keys. A result that
    has a key of that name itself keeps its own value.
    """
    results: dict[str, dict[str, Any]] = {}
    for state, result in workflow.task_results.items():
        entry = dict(result)
        entry.setdefault("success", True)
        entry.setdefault("result", result)
        entry.setdefault("task_type", workflow.task_names.get(state, state.lower()))
        results[state] = entry
    return results


def execution_status(workflow: Workflow) -> ExecutionStatus:
    """The compact status of one workflow."""
    trigger = next_trigger(workflow.state)
    return ExecutionStatus(
        workflow_id=workflow.workflow_id,
        name=workflow.name,
        status=workflow.state.value,
        current_state=workflow.state.value,
        retries=workflow.retries,
        launched=workflow.launched,
        step_running=workflow.step.value if workflow.step else None,
        next_trigger=trigger.value if trigger else None,
        allowed_actions=allowed_actions(workflow),
        transitions=len(workflow.transitions),
        started_at=workflow.started_at,
        completed_at=workflow.completed_at,
        error_message=workflow.error_message,
    )


def task_out(task: Task) -> TaskOut:
    """The read model of one standalone task as the API shows it."""
    return TaskOut(
        id=task.task_id,
        task_id=task.task_id,
        workflow_id=task.workflow_id,
        name=task.name,
        task_type=task.task_type,
        description=task.description,
        config=task.config,
        status=TaskState[task.status.name],
        result=task.result,
        error=task.error,
        error_message=task.error,
        retry_count=task.retry_count,
        max_retries=task.max_retries,
        created_at=task.created_at,
        started_at=task.started_at,
        completed_at=task.completed_at,
        updated_at=task.updated_at,
    )


def workflow_counts(by_state: dict[str, int]) -> WorkflowCounts:
    """Stats counters in the API's shape."""
    return WorkflowCounts(
        total=sum(by_state.values()),
        init=by_state.get("INIT", 0),
        prepare=by_state.get("PREPARE", 0),
        execute=by_state.get("EXECUTE", 0),
        validate=by_state.get("VALIDATE", 0),
        complete=by_state.get("COMPLETE", 0),
        failed=by_state.get("FAILED", 0),
        cancelled=by_state.get("CANCELLED", 0),
    )
