"""Property tests: whatever commands arrive, in whatever order, the folded workflow stays
consistent with the transition table."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import event as note_event
from hypothesis import given, settings
from hypothesis import strategies as st

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
from orchestrator.domain.errors import DomainError, WorkflowNotFound
from orchestrator.domain.events import (
    Event,
    StepFailed,
    StepSucceeded,
    WorkflowTransitioned,
    decode_event,
    encode_event,
)
from orchestrator.domain.states import State, Trigger
from orchestrator.domain.workflow import Workflow, decide, evolve

START = datetime(2026, 1, 1, tzinfo=UTC)
#: When the liveness checks decide; decide is pure, so the moment only stamps the events.
NOW = datetime(2026, 1, 2, tzinfo=UTC)

# DESIGN.md's table, written out again so the property does not trust the code it checks.
TABLE: dict[tuple[State, Trigger], State] = {
    (State.INIT, Trigger.PREPARE): State.PREPARE,
    (State.PREPARE, Trigger.EXECUTE): State.EXECUTE,
    (State.EXECUTE, Trigger.VALIDATE): State.VALIDATE,
    (State.VALIDATE, Trigger.COMPLETE): State.COMPLETE,
    **{
        (state, trigger): to_state
        for state in (State.INIT, State.PREPARE, State.EXECUTE, State.VALIDATE)
        for trigger, to_state in ((Trigger.FAIL, State.FAILED), (Trigger.CANCEL, State.CANCELLED))
    },
    (State.FAILED, Trigger.RETRY): State.INIT,
}
RUNNING = {State.INIT, State.PREPARE, State.EXECUTE, State.VALIDATE}


def _weighted(*choices: tuple[int, st.SearchStrategy[Command]]) -> st.SearchStrategy[Command]:
    # one_of picks its branches about equally often; sampled_from over repeated branches does not.
    branches = [branch for weight, branch in choices for _ in range(weight)]
    return st.sampled_from(branches).flatmap(lambda branch: branch)


def _commands(step: State | None) -> st.SearchStrategy[Command]:
    """Any command at all, but mostly the one that moves the workflow on, so that histories
    get past INIT: finish (or sometimes fail) the running step, else begin one (or retry)."""
    any_state = st.sampled_from(list(State))
    errors = st.sampled_from(["boom", "timeout"])
    anything: st.SearchStrategy[Command] = st.one_of(
        st.just(BeginStep(task="task")),
        st.just(AdvanceWorkflow(task="task")),
        st.builds(FinishStep, state=any_state, result=st.just({})),
        st.builds(FailStep, state=any_state, error=errors, timed_out=st.booleans()),
        st.just(RetryWorkflow()),
        st.just(CancelWorkflow()),
        st.just(DeleteWorkflow()),
        st.just(StartWorkflow(workflow_id=1, name="again")),
    )
    if step is None:
        onward: st.SearchStrategy[Command] = st.sampled_from(
            [BeginStep(task="task"), AdvanceWorkflow(task="task"), RetryWorkflow()]
        )
    else:
        onward = _weighted(
            (3, st.just(FinishStep(state=step, result={"ok": True}))),
            (1, st.builds(FailStep, state=st.just(step), error=errors, timed_out=st.booleans())),
        )
    # Mostly onward: `anything` includes cancel and delete, which end a history early.
    return _weighted((5, onward), (1, anything))


# Built once: constructing strategies inside the loop would dominate the run time.
COMMANDS: dict[State | None, st.SearchStrategy[Command]] = {
    step: _commands(step) for step in [None, *State]
}


def check_invariants(workflow: Workflow, events: list[Event]) -> None:
    """Assert everything that must hold of a workflow folded from an accepted history."""
    assert isinstance(workflow.state, State)
    assert workflow.version == len(events)
    assert WORKFLOW.fold(events) == workflow

    moves = workflow.transitions
    assert len(moves) == sum(1 for e in events if isinstance(e, WorkflowTransitioned))
    for move in moves:
        assert TABLE.get((move.from_state, move.trigger)) is move.to_state
    if moves:
        assert moves[0].from_state is State.INIT
        assert moves[-1].to_state is workflow.state
    else:
        assert workflow.state is State.INIT
    for earlier, later in itertools.pairwise(moves):
        assert earlier.to_state is later.from_state
    assert workflow.retries == sum(1 for m in moves if m.trigger is Trigger.RETRY)

    if workflow.step is not None:
        assert workflow.step is workflow.state
        assert workflow.state in RUNNING or (
            workflow.state is State.COMPLETE and not workflow.finalized
        )
    assert (workflow.completed_at is None) == (workflow.state in RUNNING)
    if workflow.state in RUNNING:
        assert workflow.error_message is None
    if workflow.state is State.FAILED:
        assert workflow.error_message is not None
    finalize_outcomes = [
        e for e in events if isinstance(e, StepSucceeded | StepFailed) and e.state is State.COMPLETE
    ]
    assert workflow.finalized == bool(finalize_outcomes)
    if workflow.finalized:
        assert workflow.state is State.COMPLETE

    # Liveness: whatever the history, the engine's next move is never refused.
    if workflow.needs_step():
        assert decide(workflow, BeginStep(task="task"), NOW) != []
    if workflow.step is not None and not workflow.deleted:
        assert decide(workflow, FinishStep(state=workflow.step, result={}), NOW) != []
        assert decide(workflow, FailStep(state=workflow.step, error="boom"), NOW) != []


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_command_sequence_keeps_the_workflow_consistent(data: st.DataObject) -> None:
    events: list[Event] = decide(None, StartWorkflow(workflow_id=1, name="prop"), START)
    workflow = evolve(None, events[0])
    check_invariants(workflow, events)

    length = data.draw(st.integers(min_value=1, max_value=40), label="length")
    for second in range(1, length + 1):
        command = data.draw(COMMANDS[workflow.step], label=f"command {second}")
        try:
            new_events = decide(workflow, command, START + timedelta(seconds=second))
        except DomainError as refusal:
            if workflow.deleted and not isinstance(command, StartWorkflow):
                assert isinstance(refusal, WorkflowNotFound)
            continue
        assert new_events, "an accepted command records at least one event"
        assert not workflow.deleted, "a deleted workflow accepts no command"
        for event in new_events:
            assert decode_event(encode_event(event)) == event
            workflow = evolve(workflow, event)
        events += new_events
        check_invariants(workflow, events)
    # Shown by --hypothesis-show-statistics: how far the generated histories get.
    note_event(f"ends {workflow.state.value}{' finalized' if workflow.finalized else ''}")
    note_event(f"deleted {workflow.deleted}")
    note_event(f"retries {min(workflow.retries, 3)}")
