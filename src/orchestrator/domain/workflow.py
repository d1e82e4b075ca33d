"""The workflow aggregate: `evolve` folds events into state, `decide` turns commands into events.

Both are pure. Time comes in as an argument so that a decision is a function of its inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec

from orchestrator.domain.commands import (
    AdvanceWorkflow,
    BeginStep,
    CancelWorkflow,
    Command,
    CreateWorkflow,
    DeleteWorkflow,
    EditWorkflow,
    FailStep,
    FailStepAttempt,
    FinishStep,
    LaunchWorkflow,
    ReportProgress,
    RetryWorkflow,
    StartWorkflow,
)
from orchestrator.domain.errors import InvalidTransition, StepInProgress, WorkflowNotFound
from orchestrator.domain.events import (
    Event,
    StepAttemptFailed,
    StepFailed,
    StepProgressed,
    StepStarted,
    StepSucceeded,
    WorkflowCreated,
    WorkflowDeleted,
    WorkflowEdited,
    WorkflowLaunched,
    WorkflowStarted,
    WorkflowTransitioned,
)
from orchestrator.domain.states import State, Trigger, is_running
from orchestrator.domain.transitions import FORWARD_TRIGGER, allowed_triggers, target


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """One move along the transition table, as the workflow remembers it."""

    from_state: State
    to_state: State
    trigger: Trigger
    at: datetime
    #: The version of the WorkflowTransitioned event in the workflow's stream (0 in read models
    #: written before it was kept); the API shows it as the transition's `id`.
    version: int = 0
    #: Why the move happened when the log says: the error of the step that failed.
    reason: str | None = None


class StepProgress(msgspec.Struct, frozen=True, kw_only=True):
    """The last progress the running step's task reported."""

    fraction: float
    note: str | None = None
    at: datetime


class Workflow(msgspec.Struct, frozen=True, kw_only=True):
    """Everything known about one workflow after folding its events."""

    workflow_id: int
    name: str
    description: str | None = None
    config: dict[str, Any] = {}
    auto_start: bool = True
    #: False while a workflow made by CreateWorkflow waits to be launched.
    launched: bool = True
    version: int = 0
    state: State = State.INIT
    retries: int = 0
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    error_message: str | None = None
    #: The state whose task has started and not yet finished, if any.
    step: State | None = None
    step_started_at: datetime | None = None
    #: The name of the task running as `step` (the StepStarted event's `task`).
    step_task: str | None = None
    #: Failed attempts of the running step so far (its task allows retries); 0 on a new step.
    step_attempts: int = 0
    #: What the running step's task last reported through `ctx.progress`.
    step_progress: StepProgress | None = None
    #: When the running step's next attempt is due, after a failed one (None: now).
    step_retry_at: datetime | None = None
    #: True once finalize has run (or failed) after reaching COMPLETE.
    finalized: bool = False
    transitions: tuple[Transition, ...] = ()
    task_results: dict[str, dict[str, Any]] = {}
    #: The name of the task that produced each entry of `task_results`, by state.
    task_names: dict[str, str] = {}
    deleted: bool = False

    def needs_step(self) -> bool:
        """True when a task is due: a running state, or COMPLETE before finalize has run."""
        if self.deleted or self.step is not None:
            return False
        return is_running(self.state) or (self.state is State.COMPLETE and not self.finalized)

    def is_driven_automatically(self) -> bool:
        """True when the engine, not `next`, advances this workflow."""
        return self.auto_start or (self.state is State.COMPLETE and not self.finalized)


ACTIONS = ("start", "next", "retry", "edit", "cancel", "delete")


def allowed_actions(workflow: Workflow) -> list[str]:
    """The client commands legal now, by their API names, in the order of ACTIONS."""
    if workflow.deleted:
        return []
    allowed: set[str] = set()
    idle = workflow.step is None
    if is_running(workflow.state):
        allowed.add("cancel")
        if idle:
            allowed.add("next")
    if workflow.state is State.FAILED:
        allowed.add("retry")
    if idle and is_editable(workflow.state):
        allowed.add("edit")
    if is_waiting_to_launch(workflow):
        allowed.update(("start", "delete"))
    if not is_running(workflow.state):
        allowed.add("delete")
    return [action for action in ACTIONS if action in allowed]


def is_editable(state: State) -> bool:
    """Name, description and config may change except while the workflow is mid-run."""
    return state not in (State.PREPARE, State.EXECUTE, State.VALIDATE)


def is_waiting_to_launch(workflow: Workflow) -> bool:
    """True for a created workflow that was never started and has no step running."""
    return not workflow.launched and workflow.state is State.INIT and workflow.step is None


def fire(workflow_id: int, state: State, trigger: Trigger) -> State:
    """The state `trigger` leads to from `state`; InvalidTransition names what is allowed."""
    to_state = target(state, trigger)
    if to_state is None:
        allowed = [t.value for t in allowed_triggers(state)]
        raise InvalidTransition(workflow_id, state.value, trigger.value, allowed)
    return to_state


def evolve(workflow: Workflow | None, event: Event) -> Workflow:
    """The workflow after `event` (the first event, WorkflowStarted, creates it)."""
    kind = type(event)
    if workflow is None and kind not in CREATION_EVENTS:
        raise ValueError(f"a workflow stream must begin with its creation, not {event!r}")
    # One lookup by the event's class instead of a chain of isinstance tests: replay, rebuild
    # and verify fold every event of the log through here. Events are tagged structs that are
    # never subclassed, so the exact class is the event's kind.
    evolver = _EVOLVERS.get(kind)
    if evolver is None:
        raise TypeError(f"unknown event {event!r}")
    return evolver(workflow, event)


_replace = msgspec.structs.replace
#: The events a workflow stream may begin with.
CREATION_EVENTS = (WorkflowStarted, WorkflowCreated)
# The members the fold compares with, looked up once: on Python 3.11 reading a member through
# its enum class goes through the metaclass's __getattr__ hook, several times the cost of a
# global, and the fold runs for every event of the log.
_COMPLETE = State.COMPLETE
_FAIL = Trigger.FAIL
_CANCEL = Trigger.CANCEL
_RETRY = Trigger.RETRY


def _started(_previous: Workflow | None, event: WorkflowStarted) -> Workflow:
    return Workflow(
        workflow_id=event.workflow_id,
        name=event.name,
        description=event.description,
        config=event.config,
        auto_start=event.auto_start,
        version=1,
        created_at=event.at,
        started_at=event.at,
        updated_at=event.at,
    )


def _created(_previous: Workflow | None, event: WorkflowCreated) -> Workflow:
    return Workflow(
        workflow_id=event.workflow_id,
        name=event.name,
        description=event.description,
        config=event.config,
        auto_start=False,
        launched=False,
        version=1,
        created_at=event.at,
        updated_at=event.at,
    )


def _launched(workflow: Workflow, event: WorkflowLaunched) -> Workflow:
    return _replace(
        workflow,
        version=workflow.version + 1,
        launched=True,
        auto_start=True,
        started_at=event.at,
        updated_at=event.at,
    )


def _edited(workflow: Workflow, event: WorkflowEdited) -> Workflow:
    return _replace(
        workflow,
        version=workflow.version + 1,
        name=event.name,
        description=event.description,
        config=event.config,
        updated_at=event.at,
    )


def _step_started(workflow: Workflow, event: StepStarted) -> Workflow:
    return _replace(
        workflow,
        version=workflow.version + 1,
        step=event.state,
        step_started_at=event.at,
        step_task=event.task,
        step_attempts=0,
        step_progress=None,
        step_retry_at=None,
        updated_at=event.at,
    )


def _step_progressed(workflow: Workflow, event: StepProgressed) -> Workflow:
    progress = StepProgress(fraction=event.fraction, note=event.note, at=event.at)
    return _replace(
        workflow, version=workflow.version + 1, step_progress=progress, updated_at=event.at
    )


def _step_attempt_failed(workflow: Workflow, event: StepAttemptFailed) -> Workflow:
    return _replace(
        workflow,
        version=workflow.version + 1,
        step_attempts=workflow.step_attempts + 1,
        step_progress=None,
        step_retry_at=event.at + timedelta(seconds=event.retry_in),
        updated_at=event.at,
    )


#: The step fields of a workflow with no step under way (its outcome recorded).
_NO_STEP: dict[str, Any] = {
    "step": None,
    "step_started_at": None,
    "step_task": None,
    "step_attempts": 0,
    "step_progress": None,
    "step_retry_at": None,
}
#: What a transition that leaves the running step alone changes of it: nothing.
_STEP_KEPT: dict[str, Any] = {}


def _step_succeeded(workflow: Workflow, event: StepSucceeded) -> Workflow:
    state = event.state.value
    results = {**workflow.task_results, state: event.result}
    names = workflow.task_names
    if workflow.step_task is not None:
        names = {**names, state: workflow.step_task}
    return _replace(
        workflow,
        version=workflow.version + 1,
        **_NO_STEP,
        task_results=results,
        task_names=names,
        finalized=workflow.finalized or event.state is _COMPLETE,
        updated_at=event.at,
    )


def _step_failed(workflow: Workflow, event: StepFailed) -> Workflow:
    return _replace(
        workflow,
        version=workflow.version + 1,
        **_NO_STEP,
        error_message=event.error,
        finalized=workflow.finalized or event.state is _COMPLETE,
        updated_at=event.at,
    )


def _transitioned(workflow: Workflow, event: WorkflowTransitioned) -> Workflow:
    version = workflow.version + 1
    trigger = event.trigger
    move = Transition(
        from_state=event.from_state,
        to_state=event.to_state,
        trigger=trigger,
        at=event.at,
        version=version,
        reason=workflow.error_message if trigger is _FAIL else None,
    )
    transitions = (*workflow.transitions, move)
    if trigger is _RETRY:
        return _replace(
            workflow,
            version=version,
            state=event.to_state,
            transitions=transitions,
            retries=workflow.retries + 1,
            completed_at=None,
            error_message=None,
            finalized=False,
            updated_at=event.at,
        )
    completed_at = workflow.completed_at if is_running(event.to_state) else event.at
    # A cancelled step's result will be discarded, so the step no longer counts as running.
    step = _NO_STEP if trigger is _CANCEL else _STEP_KEPT
    return _replace(
        workflow,
        version=version,
        state=event.to_state,
        transitions=transitions,
        completed_at=completed_at,
        **step,
        updated_at=event.at,
    )


def _deleted(workflow: Workflow, event: WorkflowDeleted) -> Workflow:
    return _replace(workflow, version=workflow.version + 1, deleted=True, updated_at=event.at)


#: How each kind of event changes the workflow (a creation event makes a new one).
_EVOLVERS: dict[type[Any], Callable[[Any, Any], Workflow]] = {
    WorkflowStarted: _started,
    WorkflowCreated: _created,
    WorkflowLaunched: _launched,
    WorkflowEdited: _edited,
    StepStarted: _step_started,
    StepProgressed: _step_progressed,
    StepAttemptFailed: _step_attempt_failed,
    StepSucceeded: _step_succeeded,
    StepFailed: _step_failed,
    WorkflowTransitioned: _transitioned,
    WorkflowDeleted: _deleted,
}


def decide(workflow: Workflow | None, command: Command, now: datetime) -> list[Event]:
    """The events that carry out `command`, or an error saying why it is refused."""
    if isinstance(command, StartWorkflow):
        if workflow is not None:
            raise InvalidTransition(
                command.workflow_id, workflow.state.value, "start", allowed_actions(workflow)
            )
        return [
            WorkflowStarted(
                at=now,
                workflow_id=command.workflow_id,
                name=command.name,
                description=command.description,
                config=command.config,
                auto_start=command.auto_start,
            )
        ]
    if isinstance(command, CreateWorkflow):
        if workflow is not None:
            raise InvalidTransition(
                command.workflow_id, workflow.state.value, "create", allowed_actions(workflow)
            )
        return [
            WorkflowCreated(
                at=now,
                workflow_id=command.workflow_id,
                name=command.name,
                description=command.description,
                config=command.config,
            )
        ]
    if workflow is None or workflow.deleted:
        raise WorkflowNotFound(workflow.workflow_id if workflow else 0)
    if isinstance(command, LaunchWorkflow):
        if not is_waiting_to_launch(workflow):
            if workflow.launched:
                hint = "it was started already"
            elif workflow.step is not None:
                hint = "a step is running"
            else:
                hint = "it is no longer waiting to start"
            raise InvalidTransition(
                workflow.workflow_id,
                workflow.state.value,
                "start",
                allowed_actions(workflow),
                hint,
            )
        return [WorkflowLaunched(at=now)]
    if isinstance(command, EditWorkflow):
        if workflow.step is not None or not is_editable(workflow.state):
            raise InvalidTransition(
                workflow.workflow_id,
                workflow.state.value,
                "edit",
                allowed_actions(workflow),
                "it is running",
            )
        return [
            WorkflowEdited(
                at=now,
                name=workflow.name if command.name is msgspec.UNSET else command.name,
                description=(
                    workflow.description
                    if command.description is msgspec.UNSET
                    else command.description
                ),
                config=workflow.config if command.config is msgspec.UNSET else command.config,
            )
        ]
    if isinstance(command, AdvanceWorkflow | BeginStep):
        return _decide_begin(workflow, command, now)
    if isinstance(command, FinishStep):
        _require_step(workflow, command.state, "record a step result")
        duration = command.duration
        succeeded = StepSucceeded(
            at=now, state=command.state, result=command.result, duration=duration
        )
        trigger = FORWARD_TRIGGER.get(command.state)
        if trigger is None:
            return [succeeded]
        return [succeeded, _transition(workflow, trigger, now)]
    if isinstance(command, FailStep):
        _require_step(workflow, command.state, "record a step failure")
        failed = StepFailed(
            at=now,
            state=command.state,
            error=command.error,
            duration=command.duration,
            timed_out=command.timed_out,
        )
        if not is_running(command.state):
            return [failed]
        return [failed, _transition(workflow, Trigger.FAIL, now)]
    if isinstance(command, ReportProgress):
        _require_step(workflow, command.state, "record progress")
        return [
            StepProgressed(
                at=now, state=command.state, fraction=command.fraction, note=command.note
            )
        ]
    if isinstance(command, FailStepAttempt):
        _require_step(workflow, command.state, "record a failed attempt")
        if command.attempt != workflow.step_attempts + 1:
            raise InvalidTransition(
                workflow.workflow_id,
                workflow.state.value,
                f"record the failure of attempt {command.attempt}",
                allowed_actions(workflow),
                f"attempt {workflow.step_attempts + 1} is the one running",
            )
        return [
            StepAttemptFailed(
                at=now,
                state=command.state,
                attempt=command.attempt,
                error=command.error,
                duration=command.duration,
                timed_out=command.timed_out,
                retry_in=command.retry_in,
            )
        ]
    if isinstance(command, CancelWorkflow | RetryWorkflow):
        trigger = Trigger.CANCEL if isinstance(command, CancelWorkflow) else Trigger.RETRY
        if target(workflow.state, trigger) is None:
            # A client is told the commands it can send, not the table's internal triggers.
            raise InvalidTransition(
                workflow.workflow_id, workflow.state.value, trigger.value, allowed_actions(workflow)
            )
        return [_transition(workflow, trigger, now)]
    if isinstance(command, DeleteWorkflow):
        if is_running(workflow.state) and not is_waiting_to_launch(workflow):
            raise InvalidTransition(
                workflow.workflow_id,
                workflow.state.value,
                "delete",
                allowed_actions(workflow),
                "cancel it first",
            )
        return [WorkflowDeleted(at=now)]
    raise TypeError(f"unknown command {command!r}")


def _decide_begin(
    workflow: Workflow, command: AdvanceWorkflow | BeginStep, now: datetime
) -> list[Event]:
    if isinstance(command, AdvanceWorkflow) and not is_running(workflow.state):
        hint = "use retry" if workflow.state is State.FAILED else "it has finished"
        raise InvalidTransition(
            workflow.workflow_id, workflow.state.value, "next", allowed_actions(workflow), hint
        )
    if workflow.step is not None:
        raise StepInProgress(workflow.workflow_id, workflow.step.value, allowed_actions(workflow))
    if not workflow.needs_step():
        raise InvalidTransition(
            workflow.workflow_id, workflow.state.value, "start a step", allowed_actions(workflow)
        )
    return [StepStarted(at=now, state=workflow.state, task=command.task)]


def _require_step(workflow: Workflow, state: State, action: str) -> None:
    # A result is only accepted for the step that is running now; a late result from a
    # cancelled, timed-out or already-recorded step is refused so the engine discards it.
    if workflow.step is not state or workflow.state is not state:
        running = workflow.step.value if workflow.step else "no step"
        raise InvalidTransition(
            workflow.workflow_id,
            workflow.state.value,
            f"{action} for {state.value}",
            allowed_actions(workflow),
            f"{running} is running",
        )


def _transition(workflow: Workflow, trigger: Trigger, now: datetime) -> WorkflowTransitioned:
    to_state = fire(workflow.workflow_id, workflow.state, trigger)
    return WorkflowTransitioned(
        at=now, from_state=workflow.state, to_state=to_state, trigger=trigger
    )
