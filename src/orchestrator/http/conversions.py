"""Conversions from the domain's read models to the API's response bodies (response_types.py).

Kept apart from the types so the handlers, the idempotent replies and the CLI (which prints
workflows as the API shows them) share one way of shaping each answer.
"""

from __future__ import annotations

from typing import Any

from orchestrator.domain.tasks import Task
from orchestrator.domain.transitions import next_trigger
from orchestrator.domain.workflow import Workflow, allowed_actions
from orchestrator.http.response_types import (
    CurrentStep,
    ExecutionStatus,
    TaskOut,
    TaskState,
    TransitionOut,
    WorkflowCounts,
    WorkflowOut,
)


def current_step(workflow: Workflow) -> CurrentStep | None:
    """The running step as the API shows it; None when no step runs."""
    if workflow.step is None:
        return None
    progress = workflow.step_progress
    return CurrentStep(
        state=workflow.step.value,
        task=workflow.step_task,
        started_at=workflow.step_started_at,
        attempt=workflow.step_attempts + 1,
        progress=progress.fraction if progress else None,
        progress_note=progress.note if progress else None,
        progress_at=progress.at if progress else None,
        next_attempt_at=workflow.step_retry_at,
    )


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
        current_step=current_step(workflow),
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
