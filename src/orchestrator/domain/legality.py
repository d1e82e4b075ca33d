"""Whether a stored event could legally follow the state before it, by the current rules.

`evolve` trusts the log; this is what `orchestrator verify` asks of every stream, so a log
written by a buggy release or edited by hand is caught.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.domain.events import (
    Event,
    StepAttemptFailed,
    StepFailed,
    StepProgressed,
    StepStarted,
    StepSucceeded,
    WorkflowDeleted,
    WorkflowEdited,
    WorkflowLaunched,
    WorkflowTransitioned,
)
from orchestrator.domain.states import is_running
from orchestrator.domain.tasks import (
    ACTIVE_STATUSES,
    Task,
    TaskCancelled,
    TaskCreated,
    TaskDeleted,
    TaskEvent,
    TaskRunFailed,
    TaskRunPickedUp,
    TaskRunStarted,
    TaskRunSucceeded,
    TaskStatus,
)
from orchestrator.domain.transitions import target
from orchestrator.domain.workflow import (
    CREATION_EVENTS,
    Workflow,
    is_editable,
    is_waiting_to_launch,
)


def workflow_violation(workflow: Workflow | None, event: Event) -> str | None:
    """Why `event` cannot follow `workflow`, or None when it can."""
    kind = type(event)
    creation = kind in CREATION_EVENTS
    if workflow is None:
        return None if creation else f"the stream begins with {kind.__name__}"
    if creation:
        return "a second creation event"
    if workflow.deleted:
        return f"{kind.__name__} after the workflow was deleted"
    # One lookup by the event's class, as in `evolve`: verify asks this of every event.
    rule = _WORKFLOW_RULES.get(kind)
    if rule is None:
        return f"unknown event {kind.__name__}"
    return rule(workflow, event)


def _transition_violation(workflow: Workflow, event: WorkflowTransitioned) -> str | None:
    state = workflow.state
    if event.from_state is not state:
        return f"a transition from {event.from_state.value} while in {state.value}"
    if target(state, event.trigger) is not event.to_state:
        return (
            f"{state.value} --{event.trigger.value}--> {event.to_state.value} "
            "is not in the transition table"
        )
    return None


def _step_start_violation(workflow: Workflow, event: StepStarted) -> str | None:
    if not workflow.needs_step() or event.state is not workflow.state:
        return f"a {event.state.value} step started while {workflow.state.value}"
    return None


def _step_outcome_violation(
    workflow: Workflow, event: StepSucceeded | StepFailed | StepProgressed
) -> str | None:
    if workflow.step is not event.state:
        return f"an outcome for the {event.state.value} step, which is not running"
    return None


def _attempt_failure_violation(workflow: Workflow, event: StepAttemptFailed) -> str | None:
    if workflow.step is not event.state:
        return f"a failed attempt of the {event.state.value} step, which is not running"
    if event.attempt != workflow.step_attempts + 1:
        return f"attempt {event.attempt} failed while attempt {workflow.step_attempts + 1} ran"
    return None


def _launch_violation(workflow: Workflow, _event: WorkflowLaunched) -> str | None:
    return None if is_waiting_to_launch(workflow) else "launched twice or while running"


def _edit_violation(workflow: Workflow, _event: WorkflowEdited) -> str | None:
    editable = workflow.step is None and is_editable(workflow.state)
    return None if editable else f"edited while {workflow.state.value}"


def _delete_violation(workflow: Workflow, _event: WorkflowDeleted) -> str | None:
    deletable = not is_running(workflow.state) or is_waiting_to_launch(workflow)
    return None if deletable else f"deleted while {workflow.state.value}"


#: What each kind of event (after the first) requires of the workflow it follows.
_WORKFLOW_RULES: dict[type[Any], Callable[[Workflow, Any], str | None]] = {
    WorkflowTransitioned: _transition_violation,
    StepStarted: _step_start_violation,
    StepSucceeded: _step_outcome_violation,
    StepFailed: _step_outcome_violation,
    StepProgressed: _step_outcome_violation,
    StepAttemptFailed: _attempt_failure_violation,
    WorkflowLaunched: _launch_violation,
    WorkflowEdited: _edit_violation,
    WorkflowDeleted: _delete_violation,
}


def task_violation(task: Task | None, event: TaskEvent) -> str | None:
    """Why `event` cannot follow `task`, or None when it can."""
    if task is None:
        return None if isinstance(event, TaskCreated) else "the stream begins without TaskCreated"
    if isinstance(event, TaskCreated):
        return "a second creation event"
    if task.deleted:
        return f"{type(event).__name__} after the task was deleted"
    if isinstance(event, TaskRunStarted):
        ok = (
            task.status is TaskStatus.PENDING
            and not task.in_run
            and event.attempt == task.attempt + 1
        )
        return None if ok else f"run {event.attempt} started while {task.status.value}"
    if isinstance(event, TaskRunPickedUp):
        ok = task.in_run and task.status is TaskStatus.PENDING and event.attempt == task.attempt
        return None if ok else f"run {event.attempt} picked up while {task.status.value}"
    if isinstance(event, TaskRunSucceeded | TaskRunFailed):
        return None if task.in_run else f"a run outcome while {task.status.value}"
    if isinstance(event, TaskCancelled):
        ok = task.status in ACTIVE_STATUSES
        return None if ok else f"cancelled while {task.status.value}"
    if isinstance(event, TaskDeleted):
        return None
    return f"unknown event {type(event).__name__}"
