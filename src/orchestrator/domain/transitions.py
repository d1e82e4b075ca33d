"""The hand-written transition table: the only place that says which moves are legal."""

from __future__ import annotations

from orchestrator.domain.states import RUNNING_STATES, State, Trigger

TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (State.INIT, Trigger.PREPARE): State.PREPARE,
    (State.PREPARE, Trigger.EXECUTE): State.EXECUTE,
    (State.EXECUTE, Trigger.VALIDATE): State.VALIDATE,
    (State.VALIDATE, Trigger.COMPLETE): State.COMPLETE,
    **{(state, Trigger.FAIL): State.FAILED for state in RUNNING_STATES},
    **{(state, Trigger.CANCEL): State.CANCELLED for state in RUNNING_STATES},
    (State.FAILED, Trigger.RETRY): State.INIT,
}

#: The trigger a state's task fires when it succeeds.
FORWARD_TRIGGER: dict[State, Trigger] = {
    State.INIT: Trigger.PREPARE,
    State.PREPARE: Trigger.EXECUTE,
    State.EXECUTE: Trigger.VALIDATE,
    State.VALIDATE: Trigger.COMPLETE,
}


def target(state: State, trigger: Trigger) -> State | None:
    """The state `trigger` leads to from `state`, or None if the table does not allow it."""
    return TRANSITIONS.get((state, trigger))


def allowed_triggers(state: State) -> list[Trigger]:
    """The triggers the table allows from `state`, in table order."""
    return [trigger for (source, trigger) in TRANSITIONS if source is state]


def next_trigger(state: State) -> Trigger | None:
    """The trigger the workflow fires next: its forward trigger, `retry` in FAILED, else None."""
    if state is State.FAILED:
        return Trigger.RETRY
    return FORWARD_TRIGGER.get(state)
