"""Request and response bodies, as msgspec Structs (decode and encode in one step each)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from orchestrator.domain.transitions import next_trigger
from orchestrator.domain.workflow import Workflow, allowed_actions

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Description = Annotated[str, msgspec.Meta(max_length=10_000)]


class StartWorkflowRequest(msgspec.Struct, kw_only=True):
    """POST /workflow/start. Unknown fields are ignored, as the original API did."""

    name: Name
    description: Description | None = None
    config: dict[str, Any] | None = None
    auto_start: bool = True


class WorkflowStartedResponse(msgspec.Struct, kw_only=True):
    """201 answer to POST /workflow/start."""

    message: str
    workflow_id: int
    name: str
    status: str
    current_state: str


class TransitionOut(msgspec.Struct, kw_only=True):
    """One recorded transition; `timestamp` and `created_at` carry the same time."""

    from_state: str
    to_state: str
    trigger: str
    timestamp: datetime
    created_at: datetime


class WorkflowOut(msgspec.Struct, kw_only=True):
    """GET /workflow/{id}: the original fields, then additions."""

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
    transitions: list[TransitionOut]
    task_results: dict[str, dict[str, Any]]
    config: dict[str, Any]
    auto_start: bool
    step_running: str | None
    allowed_actions: list[str]
    version: int
    updated_at: datetime | None


class StepResponse(msgspec.Struct, kw_only=True):
    """Answer to next and cancel."""

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
    """GET /execution/stats."""

    worker_pool: WorkerPoolStats
    workflows: WorkflowCounts


class Health(msgspec.Struct, kw_only=True):
    """GET /health."""

    status: str
    version: str
    database: str
    log_position: int
    projection_position: int


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
        transitions=[
            TransitionOut(
                from_state=t.from_state.value,
                to_state=t.to_state.value,
                trigger=t.trigger.value,
                timestamp=t.at,
                created_at=t.at,
            )
            for t in workflow.transitions
        ],
        task_results=workflow.task_results,
        config=workflow.config,
        auto_start=workflow.auto_start,
        step_running=workflow.step.value if workflow.step else None,
        allowed_actions=allowed_actions(workflow),
        version=workflow.version,
        updated_at=workflow.updated_at,
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
