"""The workflow aggregate: given events, when a command is decided, then these events (or this
refusal); folding the events yields the expected workflow."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.domain.aggregates import WORKFLOW
from orchestrator.domain.commands import (
    AdvanceWorkflow,
    BeginStep,
    CancelWorkflow,
    Command,
    DeleteWorkflow,
    FailStep,
    FinishStep,
    RetryWorkflow,
    StartWorkflow,
)
from orchestrator.domain.errors import InvalidTransition, StepInProgress, WorkflowNotFound
from orchestrator.domain.events import (
    Event,
    StepFailed,
    StepStarted,
    StepSucceeded,
    WorkflowDeleted,
    WorkflowStarted,
    WorkflowTransitioned,
    decode_event,
    encode_event,
    event_type,
    stream_id,
)
from orchestrator.domain.states import State, Trigger
from orchestrator.domain.workflow import (
    Transition,
    Workflow,
    allowed_actions,
    decide,
    evolve,
)

WORKFLOW_ID = 7
START = datetime(2026, 1, 1, tzinfo=UTC)
#: The moment every command under test is decided at (later than any given event).
NOW = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)

RUNNING = [State.INIT, State.PREPARE, State.EXECUTE, State.VALIDATE]
FINISHED = [State.COMPLETE, State.FAILED, State.CANCELLED]
NEXT_STATE = {
    State.INIT: (Trigger.PREPARE, State.PREPARE),
    State.PREPARE: (Trigger.EXECUTE, State.EXECUTE),
    State.EXECUTE: (Trigger.VALIDATE, State.VALIDATE),
    State.VALIDATE: (Trigger.COMPLETE, State.COMPLETE),
}
TASKS = {
    State.INIT: "initialize",
    State.PREPARE: "prepare",
    State.EXECUTE: "execute",
    State.VALIDATE: "validate",
    State.COMPLETE: "finalize",
}


def at(seconds: int) -> datetime:
    """A fixed moment `seconds` after the workflow started."""
    return START + timedelta(seconds=seconds)


def started(*, auto_start: bool = True) -> list[Event]:
    """The stream of a workflow that has just been started."""
    return [
        WorkflowStarted(
            at=START,
            workflow_id=WORKFLOW_ID,
            name="nightly-report",
            description="builds the report",
            config={"region": "eu", "limit": 3},
            auto_start=auto_start,
        )
    ]


def when(given: list[Event], command: Command) -> list[Event]:
    """The events `command` produces on the workflow folded from `given`, decided at NOW."""
    return decide(WORKFLOW.fold(given), command, NOW)


def history(*commands: Command, auto_start: bool = True) -> list[Event]:
    """A started workflow's stream after `commands`, each decided one second after the last."""
    events = started(auto_start=auto_start)
    for second, command in enumerate(commands, start=1):
        events += decide(WORKFLOW.fold(events), command, at(second))
    return events


def run_step(state: State) -> tuple[Command, Command]:
    """The commands the engine issues to run `state`'s task to success."""
    return BeginStep(task=TASKS[state]), FinishStep(state=state, result={"done": state.value})


def steps_through(*states: State) -> list[Command]:
    """Successful steps for each of `states`, in order."""
    return [command for state in states for command in run_step(state)]


def in_state(state: State) -> list[Event]:
    """A stream whose workflow is in `state` with no step running (COMPLETE: not finalized)."""
    happy = [State.INIT, State.PREPARE, State.EXECUTE, State.VALIDATE]
    if state in happy:
        return history(*steps_through(*happy[: happy.index(state)]))
    if state is State.COMPLETE:
        return history(*steps_through(*happy))
    if state is State.FAILED:
        return history(BeginStep(task="initialize"), FailStep(state=State.INIT, error="boom"))
    return history(CancelWorkflow())


def with_step(state: State) -> list[Event]:
    """A stream whose workflow is in `state` with that state's task running."""
    events = in_state(state)
    return events + decide(WORKFLOW.fold(events), BeginStep(task=TASKS[state]), at(100))


def workflow_of(events: list[Event]) -> Workflow:
    """The folded workflow of a non-empty stream."""
    workflow = WORKFLOW.fold(events)
    assert workflow is not None
    return workflow


def _id(value: object) -> str:
    return str(value.value) if isinstance(value, State | Trigger) else type(value).__name__


# --- start ------------------------------------------------------------------------------------


def test_start_records_workflow_started_with_the_commands_fields() -> None:
    command = StartWorkflow(
        workflow_id=WORKFLOW_ID,
        name="nightly-report",
        description="builds the report",
        config={"region": "eu"},
        auto_start=False,
    )

    assert decide(None, command, NOW) == [
        WorkflowStarted(
            at=NOW,
            workflow_id=WORKFLOW_ID,
            name="nightly-report",
            description="builds the report",
            config={"region": "eu"},
            auto_start=False,
        )
    ]


def test_folding_workflow_started_yields_a_fresh_workflow_in_init() -> None:
    workflow = workflow_of(started(auto_start=False))

    assert workflow == Workflow(
        workflow_id=WORKFLOW_ID,
        name="nightly-report",
        description="builds the report",
        config={"region": "eu", "limit": 3},
        auto_start=False,
        version=1,
        state=State.INIT,
        retries=0,
        created_at=START,
        started_at=START,
        completed_at=None,
        updated_at=START,
        error_message=None,
        step=None,
        step_started_at=None,
        step_task=None,
        finalized=False,
        transitions=(),
        task_results={},
        task_names={},
        deleted=False,
    )


def test_starting_an_existing_workflow_is_refused() -> None:
    with pytest.raises(InvalidTransition) as caught:
        when(started(), StartWorkflow(workflow_id=WORKFLOW_ID, name="again"))

    assert caught.value.action == "start"
    assert caught.value.state == "INIT"


def test_an_empty_stream_folds_to_no_workflow() -> None:
    assert WORKFLOW.fold([]) is None


def test_a_stream_must_begin_with_workflow_started() -> None:
    with pytest.raises(ValueError, match="must begin with its creation"):
        evolve(None, StepStarted(at=START, state=State.INIT, task="initialize"))


# --- beginning a step -------------------------------------------------------------------------


@pytest.mark.parametrize("state", RUNNING, ids=_id)
@pytest.mark.parametrize("command_type", [BeginStep, AdvanceWorkflow], ids=_id)
def test_beginning_a_step_in_a_running_state_records_step_started(
    state: State, command_type: type[BeginStep | AdvanceWorkflow]
) -> None:
    given = in_state(state)

    events = when(given, command_type(task=TASKS[state]))

    assert events == [StepStarted(at=NOW, state=state, task=TASKS[state])]
    workflow = workflow_of(given + events)
    assert workflow.state is state
    assert workflow.step is state
    assert workflow.step_started_at == NOW
    assert workflow.updated_at == NOW


@pytest.mark.parametrize(
    ("state", "command_type"),
    [
        *((state, kind) for state in RUNNING for kind in (BeginStep, AdvanceWorkflow)),
        (State.COMPLETE, BeginStep),
    ],
    ids=_id,
)
def test_beginning_a_step_while_one_is_running_raises_step_in_progress(
    state: State, command_type: type[BeginStep | AdvanceWorkflow]
) -> None:
    with pytest.raises(StepInProgress) as caught:
        when(with_step(state), command_type(task="again"))

    assert caught.value.workflow_id == WORKFLOW_ID
    assert caught.value.state == state.value
    allowed = "delete" if state is State.COMPLETE else "cancel"
    assert str(caught.value) == (
        f"workflow {WORKFLOW_ID} is running its {state.value} step; wait for it to finish; "
        f"allowed: {allowed}"
    )


def test_next_while_finalize_runs_says_the_workflow_has_finished() -> None:
    with pytest.raises(InvalidTransition) as caught:
        when(with_step(State.COMPLETE), AdvanceWorkflow(task="again"))

    assert str(caught.value) == (
        f"workflow {WORKFLOW_ID} is COMPLETE; cannot next; allowed: delete (it has finished)"
    )


def test_advancing_a_failed_workflow_says_to_use_retry() -> None:
    with pytest.raises(InvalidTransition) as caught:
        when(in_state(State.FAILED), AdvanceWorkflow(task="initialize"))

    assert caught.value.action == "next"
    assert caught.value.allowed == ["retry", "edit", "delete"]
    assert str(caught.value) == (
        f"workflow {WORKFLOW_ID} is FAILED; cannot next; allowed: retry, edit, delete (use retry)"
    )


@pytest.mark.parametrize("state", [State.COMPLETE, State.CANCELLED], ids=_id)
def test_advancing_a_finished_workflow_says_it_has_finished(state: State) -> None:
    with pytest.raises(InvalidTransition) as caught:
        when(in_state(state), AdvanceWorkflow(task="anything"))

    assert str(caught.value) == (
        f"workflow {WORKFLOW_ID} is {state.value}; cannot next; "
        "allowed: edit, delete (it has finished)"
    )


@pytest.mark.parametrize("state", [State.FAILED, State.CANCELLED], ids=_id)
def test_beginning_a_step_in_failed_or_cancelled_is_refused(state: State) -> None:
    with pytest.raises(InvalidTransition) as caught:
        when(in_state(state), BeginStep(task="anything"))

    assert caught.value.state == state.value
    assert caught.value.action == "start a step"


# --- finishing a step -------------------------------------------------------------------------


@pytest.mark.parametrize("state", RUNNING, ids=_id)
def test_finishing_a_step_records_its_result_and_fires_the_forward_trigger(state: State) -> None:
    given = with_step(state)
    trigger, to_state = NEXT_STATE[state]

    events = when(given, FinishStep(state=state, result={"rows": 12}, duration=1.5))

    assert events == [
        StepSucceeded(at=NOW, state=state, result={"rows": 12}, duration=1.5),
        WorkflowTransitioned(at=NOW, from_state=state, to_state=to_state, trigger=trigger),
    ]
    workflow = workflow_of(given + events)
    assert workflow.state is to_state
    assert workflow.step is None
    assert workflow.step_started_at is None
    assert workflow.task_results[state.value] == {"rows": 12}
    assert workflow.task_names[state.value] == TASKS[state]
    assert workflow.transitions[-1] == Transition(
        from_state=state, to_state=to_state, trigger=trigger, at=NOW, version=workflow.version
    )


def test_given_explicit_events_finishing_init_moves_to_prepare() -> None:
    given: list[Event] = [
        *started(),
        StepStarted(at=at(1), state=State.INIT, task="initialize"),
    ]

    events = when(given, FinishStep(state=State.INIT, result={}))

    assert events == [
        StepSucceeded(at=NOW, state=State.INIT, result={}),
        WorkflowTransitioned(
            at=NOW, from_state=State.INIT, to_state=State.PREPARE, trigger=Trigger.PREPARE
        ),
    ]
    workflow = workflow_of(given + events)
    assert (workflow.state, workflow.version, workflow.completed_at) == (State.PREPARE, 4, None)


def test_finishing_validate_reaches_complete_with_completed_at_set() -> None:
    given = with_step(State.VALIDATE)

    events = when(given, FinishStep(state=State.VALIDATE, result={"valid": True}))

    workflow = workflow_of(given + events)
    assert workflow.state is State.COMPLETE
    assert workflow.completed_at == NOW
    assert workflow.finalized is False
    assert workflow.needs_step() is True
    assert [t.trigger for t in workflow.transitions] == [
        Trigger.PREPARE,
        Trigger.EXECUTE,
        Trigger.VALIDATE,
        Trigger.COMPLETE,
    ]
    assert set(workflow.task_results) == {"INIT", "PREPARE", "EXECUTE", "VALIDATE"}


def test_beginning_finalize_in_complete_records_step_started() -> None:
    given = in_state(State.COMPLETE)

    events = when(given, BeginStep(task="finalize"))

    assert events == [StepStarted(at=NOW, state=State.COMPLETE, task="finalize")]
    assert workflow_of(given + events).step is State.COMPLETE


def test_finishing_finalize_records_only_step_succeeded_and_marks_it_finalized() -> None:
    given = with_step(State.COMPLETE)
    completed_at = workflow_of(given).completed_at

    events = when(given, FinishStep(state=State.COMPLETE, result={"archived": True}))

    assert events == [StepSucceeded(at=NOW, state=State.COMPLETE, result={"archived": True})]
    workflow = workflow_of(given + events)
    assert workflow.state is State.COMPLETE
    assert workflow.finalized is True
    assert workflow.step is None
    assert workflow.completed_at == completed_at
    assert workflow.task_results["COMPLETE"] == {"archived": True}
    assert workflow.needs_step() is False


def test_a_failed_finalize_records_only_step_failed_and_still_counts_as_finalized() -> None:
    given = with_step(State.COMPLETE)

    events = when(given, FailStep(state=State.COMPLETE, error="disk full"))

    assert events == [StepFailed(at=NOW, state=State.COMPLETE, error="disk full")]
    workflow = workflow_of(given + events)
    assert workflow.state is State.COMPLETE
    assert workflow.finalized is True
    assert workflow.needs_step() is False


def test_finalize_does_not_run_twice() -> None:
    given = with_step(State.COMPLETE)
    given += when(given, FinishStep(state=State.COMPLETE, result={}))

    with pytest.raises(InvalidTransition):
        when(given, BeginStep(task="finalize"))


def test_a_manual_workflow_is_driven_automatically_only_to_finalize() -> None:
    manual = history(*steps_through(State.INIT), auto_start=False)
    assert workflow_of(manual).is_driven_automatically() is False

    complete = history(
        *steps_through(State.INIT, State.PREPARE, State.EXECUTE, State.VALIDATE),
        auto_start=False,
    )
    assert workflow_of(complete).is_driven_automatically() is True


# --- failing a step ---------------------------------------------------------------------------


@pytest.mark.parametrize("state", RUNNING, ids=_id)
def test_failing_a_step_records_the_error_and_fires_fail(state: State) -> None:
    given = with_step(state)

    events = when(given, FailStep(state=state, error="connection reset", duration=0.25))

    assert events == [
        StepFailed(at=NOW, state=state, error="connection reset", duration=0.25),
        WorkflowTransitioned(at=NOW, from_state=state, to_state=State.FAILED, trigger=Trigger.FAIL),
    ]
    workflow = workflow_of(given + events)
    assert workflow.state is State.FAILED
    assert workflow.error_message == "connection reset"
    assert workflow.completed_at == NOW
    assert workflow.step is None


def test_a_timed_out_step_is_recorded_as_timed_out() -> None:
    events = when(
        with_step(State.EXECUTE), FailStep(state=State.EXECUTE, error="timed out", timed_out=True)
    )

    failed = events[0]
    assert isinstance(failed, StepFailed)
    assert failed.timed_out is True


# --- retry ------------------------------------------------------------------------------------


def test_retry_from_failed_returns_to_init_with_one_more_retry() -> None:
    given = in_state(State.FAILED)
    assert workflow_of(given).error_message == "boom"
    assert workflow_of(given).completed_at is not None

    events = when(given, RetryWorkflow())

    assert events == [
        WorkflowTransitioned(
            at=NOW, from_state=State.FAILED, to_state=State.INIT, trigger=Trigger.RETRY
        )
    ]
    workflow = workflow_of(given + events)
    assert workflow.state is State.INIT
    assert workflow.retries == 1
    assert workflow.completed_at is None
    assert workflow.error_message is None
    assert workflow.finalized is False
    assert workflow.needs_step() is True


def test_each_retry_counts_once() -> None:
    fail_init = (BeginStep(task="initialize"), FailStep(state=State.INIT, error="boom"))
    events = history(*fail_init, RetryWorkflow(), *fail_init, RetryWorkflow())

    assert workflow_of(events).retries == 2
    assert workflow_of(events).state is State.INIT


@pytest.mark.parametrize("state", [*RUNNING, State.COMPLETE, State.CANCELLED], ids=_id)
def test_retry_outside_failed_is_refused_naming_the_state(state: State) -> None:
    with pytest.raises(InvalidTransition) as caught:
        when(in_state(state), RetryWorkflow())

    assert caught.value.state == state.value
    assert caught.value.action == "retry"
    assert str(caught.value).startswith(
        f"workflow {WORKFLOW_ID} is {state.value}; cannot retry; allowed: "
    )


@pytest.mark.parametrize(
    ("state", "command"),
    [
        (State.INIT, RetryWorkflow()),
        (State.CANCELLED, RetryWorkflow()),
        (State.COMPLETE, CancelWorkflow()),
        (State.FAILED, CancelWorkflow()),
    ],
    ids=_id,
)
def test_a_refused_retry_or_cancel_lists_the_client_actions_allowed(
    state: State, command: Command
) -> None:
    given = in_state(state)

    with pytest.raises(InvalidTransition) as caught:
        when(given, command)

    assert caught.value.allowed == allowed_actions(workflow_of(given))


# --- cancel -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", RUNNING, ids=_id)
@pytest.mark.parametrize("step_running", [False, True], ids=["idle", "step-running"])
def test_cancel_moves_a_running_workflow_to_cancelled_at_once(
    state: State, step_running: bool
) -> None:
    given = with_step(state) if step_running else in_state(state)

    events = when(given, CancelWorkflow())

    assert events == [
        WorkflowTransitioned(
            at=NOW, from_state=state, to_state=State.CANCELLED, trigger=Trigger.CANCEL
        )
    ]
    workflow = workflow_of(given + events)
    assert workflow.state is State.CANCELLED
    assert workflow.step is None
    assert workflow.completed_at == NOW


@pytest.mark.parametrize("state", FINISHED, ids=_id)
def test_cancel_of_a_finished_workflow_is_refused(state: State) -> None:
    with pytest.raises(InvalidTransition) as caught:
        when(in_state(state), CancelWorkflow())

    assert caught.value.action == "cancel"
    assert caught.value.state == state.value


@pytest.mark.parametrize("state", RUNNING, ids=_id)
def test_a_late_result_after_cancel_is_refused(state: State) -> None:
    given = with_step(state)
    given += when(given, CancelWorkflow())

    with pytest.raises(InvalidTransition) as caught:
        when(given, FinishStep(state=state, result={"late": True}))

    assert caught.value.state == "CANCELLED"
    assert "no step is running" in str(caught.value)


def test_a_late_failure_after_cancel_is_refused() -> None:
    given = with_step(State.EXECUTE)
    given += when(given, CancelWorkflow())

    with pytest.raises(InvalidTransition):
        when(given, FailStep(state=State.EXECUTE, error="too late"))


def test_a_late_result_after_a_timeout_is_refused() -> None:
    given = with_step(State.EXECUTE)
    given += when(given, FailStep(state=State.EXECUTE, error="timed out", timed_out=True))

    with pytest.raises(InvalidTransition) as caught:
        when(given, FinishStep(state=State.EXECUTE, result={}))

    assert caught.value.state == "FAILED"


def test_a_result_is_refused_when_no_step_was_started() -> None:
    with pytest.raises(InvalidTransition) as caught:
        when(in_state(State.PREPARE), FinishStep(state=State.PREPARE, result={}))

    assert caught.value.action == "record a step result for PREPARE"


def test_a_result_for_another_state_than_the_running_step_is_refused() -> None:
    with pytest.raises(InvalidTransition) as caught:
        when(with_step(State.PREPARE), FinishStep(state=State.INIT, result={}))

    assert str(caught.value).endswith("(PREPARE is running)")


def test_a_result_is_recorded_only_once() -> None:
    given = with_step(State.INIT)
    given += when(given, FinishStep(state=State.INIT, result={}))

    with pytest.raises(InvalidTransition):
        when(given, FinishStep(state=State.INIT, result={}))


# --- delete -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", FINISHED, ids=_id)
def test_delete_of_a_finished_workflow_records_a_tombstone(state: State) -> None:
    given = in_state(state)

    events = when(given, DeleteWorkflow())

    assert events == [WorkflowDeleted(at=NOW)]
    workflow = workflow_of(given + events)
    assert workflow.deleted is True
    assert workflow.state is state
    assert workflow.needs_step() is False


@pytest.mark.parametrize("state", RUNNING, ids=_id)
def test_delete_of_a_running_workflow_is_refused_with_a_hint_to_cancel(state: State) -> None:
    with pytest.raises(InvalidTransition) as caught:
        when(in_state(state), DeleteWorkflow())

    allowed = "next, edit, cancel" if state is State.INIT else "next, cancel"
    assert caught.value.action == "delete"
    assert str(caught.value) == (
        f"workflow {WORKFLOW_ID} is {state.value}; cannot delete; allowed: {allowed} "
        "(cancel it first)"
    )


@pytest.mark.parametrize(
    "command",
    [
        BeginStep(task="initialize"),
        AdvanceWorkflow(task="initialize"),
        FinishStep(state=State.COMPLETE, result={}),
        FailStep(state=State.COMPLETE, error="boom"),
        RetryWorkflow(),
        CancelWorkflow(),
        DeleteWorkflow(),
    ],
    ids=_id,
)
def test_commands_on_a_deleted_workflow_raise_workflow_not_found(command: Command) -> None:
    given = in_state(State.COMPLETE)
    given += when(given, DeleteWorkflow())

    with pytest.raises(WorkflowNotFound) as caught:
        when(given, command)

    assert caught.value.workflow_id == WORKFLOW_ID
    assert str(caught.value) == f"workflow {WORKFLOW_ID} does not exist"


@pytest.mark.parametrize("command", [RetryWorkflow(), CancelWorkflow(), DeleteWorkflow()], ids=_id)
def test_commands_on_a_workflow_never_started_raise_workflow_not_found(command: Command) -> None:
    with pytest.raises(WorkflowNotFound):
        decide(None, command, NOW)


# --- allowed actions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (State.INIT, ["next", "edit", "cancel"]),
        (State.PREPARE, ["next", "cancel"]),
        (State.EXECUTE, ["next", "cancel"]),
        (State.VALIDATE, ["next", "cancel"]),
        (State.COMPLETE, ["edit", "delete"]),
        (State.FAILED, ["retry", "edit", "delete"]),
        (State.CANCELLED, ["edit", "delete"]),
    ],
    ids=_id,
)
def test_allowed_actions_follow_the_state(state: State, expected: list[str]) -> None:
    assert allowed_actions(workflow_of(in_state(state))) == expected


@pytest.mark.parametrize("state", RUNNING, ids=_id)
def test_only_cancel_is_allowed_while_a_step_runs(state: State) -> None:
    assert allowed_actions(workflow_of(with_step(state))) == ["cancel"]


def test_nothing_is_allowed_on_a_deleted_workflow() -> None:
    given = in_state(State.FAILED)
    given += when(given, DeleteWorkflow())

    assert allowed_actions(workflow_of(given)) == []


# --- stored events and versions ---------------------------------------------------------------


def _moved(second: int, from_state: State, trigger: Trigger, to_state: State) -> Event:
    return WorkflowTransitioned(
        at=at(second), from_state=from_state, to_state=to_state, trigger=trigger
    )


def _step(second: int, state: State) -> list[Event]:
    return [
        StepStarted(at=at(second), state=state, task=TASKS[state]),
        StepSucceeded(at=at(second + 1), state=state, result={"done": state.value}),
    ]


#: A whole life written out as events: fail (timed out), retry, run to COMPLETE, finalize, delete.
FULL_HISTORY: list[Event] = [
    *started(),
    StepStarted(at=at(1), state=State.INIT, task="initialize"),
    StepFailed(at=at(2), state=State.INIT, error="boom", duration=0.5, timed_out=True),
    _moved(2, State.INIT, Trigger.FAIL, State.FAILED),
    _moved(3, State.FAILED, Trigger.RETRY, State.INIT),
    *_step(4, State.INIT),
    _moved(5, State.INIT, Trigger.PREPARE, State.PREPARE),
    *_step(6, State.PREPARE),
    _moved(7, State.PREPARE, Trigger.EXECUTE, State.EXECUTE),
    *_step(8, State.EXECUTE),
    _moved(9, State.EXECUTE, Trigger.VALIDATE, State.VALIDATE),
    *_step(10, State.VALIDATE),
    _moved(11, State.VALIDATE, Trigger.COMPLETE, State.COMPLETE),
    *_step(12, State.COMPLETE),
    WorkflowDeleted(at=at(14)),
]


def test_deciding_a_whole_life_command_by_command_records_exactly_its_events() -> None:
    events = history(
        BeginStep(task="initialize"),
        FailStep(state=State.INIT, error="boom", duration=0.5, timed_out=True),
        RetryWorkflow(),
        *steps_through(State.INIT, State.PREPARE, State.EXECUTE, State.VALIDATE, State.COMPLETE),
        DeleteWorkflow(),
    )

    assert events == FULL_HISTORY


def test_folding_a_whole_life_yields_its_final_workflow() -> None:
    workflow = workflow_of(FULL_HISTORY)

    assert workflow.state is State.COMPLETE
    assert workflow.version == len(FULL_HISTORY) == 20
    assert workflow.retries == 1
    assert workflow.error_message is None
    assert workflow.started_at == START
    assert workflow.completed_at == at(11)
    assert workflow.updated_at == at(14)
    assert workflow.finalized is True
    assert workflow.deleted is True
    assert workflow.step is None
    assert [(t.from_state, t.to_state) for t in workflow.transitions] == [
        (State.INIT, State.FAILED),
        (State.FAILED, State.INIT),
        (State.INIT, State.PREPARE),
        (State.PREPARE, State.EXECUTE),
        (State.EXECUTE, State.VALIDATE),
        (State.VALIDATE, State.COMPLETE),
    ]
    assert set(workflow.task_results) == {"INIT", "PREPARE", "EXECUTE", "VALIDATE", "COMPLETE"}


def test_the_full_history_uses_every_event_type() -> None:
    assert {event_type(e) for e in FULL_HISTORY} == {
        "WorkflowStarted",
        "StepStarted",
        "StepSucceeded",
        "StepFailed",
        "WorkflowTransitioned",
        "WorkflowDeleted",
    }


@pytest.mark.parametrize("event", FULL_HISTORY, ids=_id)
def test_an_event_round_trips_through_encode_and_decode_unchanged(event: Event) -> None:
    data = encode_event(event)

    decoded = decode_event(data)

    assert decoded == event
    assert type(decoded) is type(event)
    assert json.loads(data)["type"] == event_type(event)


def test_a_decoded_history_folds_to_the_same_workflow() -> None:
    decoded = [decode_event(encode_event(e)) for e in FULL_HISTORY]

    assert WORKFLOW.fold(decoded) == WORKFLOW.fold(FULL_HISTORY)


def test_an_event_is_stored_under_its_class_name_with_stable_field_names() -> None:
    event = WorkflowTransitioned(
        at=START, from_state=State.FAILED, to_state=State.INIT, trigger=Trigger.RETRY
    )

    assert json.loads(encode_event(event)) == {
        "type": "WorkflowTransitioned",
        "at": "2026-01-01T00:00:00Z",
        "from_state": "FAILED",
        "to_state": "INIT",
        "trigger": "retry",
    }


@pytest.mark.parametrize("count", range(1, len(FULL_HISTORY) + 1))
def test_version_equals_the_number_of_events_folded(count: int) -> None:
    assert workflow_of(FULL_HISTORY[:count]).version == count


def test_folding_is_evolving_one_event_at_a_time() -> None:
    workflow: Workflow | None = None
    for event in FULL_HISTORY:
        workflow = evolve(workflow, event)

    assert workflow is not None
    assert workflow == WORKFLOW.fold(FULL_HISTORY)


def test_a_workflows_stream_id_is_prefixed_with_workflow() -> None:
    assert stream_id(42) == "workflow-42"
