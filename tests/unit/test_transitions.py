"""The transition table as data: every (state, trigger) pair either reaches DESIGN.md's target or
is refused with InvalidTransition naming the state and what is allowed."""

from __future__ import annotations

import itertools

import pytest

from orchestrator.domain.errors import DomainError, InvalidTransition
from orchestrator.domain.states import (
    FINAL_STATES,
    RUNNING_STATES,
    State,
    Trigger,
    is_running,
    is_terminal,
)
from orchestrator.domain.transitions import (
    FORWARD_TRIGGER,
    TRANSITIONS,
    allowed_triggers,
    next_trigger,
    target,
)
from orchestrator.domain.workflow import fire

# Written out by hand from DESIGN.md's table, deliberately not derived from TRANSITIONS.
EXPECTED: dict[tuple[State, Trigger], State] = {
    (State.INIT, Trigger.PREPARE): State.PREPARE,
    (State.PREPARE, Trigger.EXECUTE): State.EXECUTE,
    (State.EXECUTE, Trigger.VALIDATE): State.VALIDATE,
    (State.VALIDATE, Trigger.COMPLETE): State.COMPLETE,
    (State.INIT, Trigger.FAIL): State.FAILED,
    (State.PREPARE, Trigger.FAIL): State.FAILED,
    (State.EXECUTE, Trigger.FAIL): State.FAILED,
    (State.VALIDATE, Trigger.FAIL): State.FAILED,
    (State.INIT, Trigger.CANCEL): State.CANCELLED,
    (State.PREPARE, Trigger.CANCEL): State.CANCELLED,
    (State.EXECUTE, Trigger.CANCEL): State.CANCELLED,
    (State.VALIDATE, Trigger.CANCEL): State.CANCELLED,
    (State.FAILED, Trigger.RETRY): State.INIT,
}

# The triggers each state allows, in the order the table lists them.
EXPECTED_ALLOWED: dict[State, list[Trigger]] = {
    State.INIT: [Trigger.PREPARE, Trigger.FAIL, Trigger.CANCEL],
    State.PREPARE: [Trigger.EXECUTE, Trigger.FAIL, Trigger.CANCEL],
    State.EXECUTE: [Trigger.VALIDATE, Trigger.FAIL, Trigger.CANCEL],
    State.VALIDATE: [Trigger.COMPLETE, Trigger.FAIL, Trigger.CANCEL],
    State.COMPLETE: [],
    State.FAILED: [Trigger.RETRY],
    State.CANCELLED: [],
}

ALL_PAIRS = list(itertools.product(State, Trigger))
ALLOWED_PAIRS = [pair for pair in ALL_PAIRS if pair in EXPECTED]
REFUSED_PAIRS = [pair for pair in ALL_PAIRS if pair not in EXPECTED]


def _pair_id(pair: tuple[State, Trigger]) -> str:
    state, trigger = pair
    return f"{state.value}-{trigger.value}"


def _value_id(value: object) -> str:
    return str(value.value) if isinstance(value, State | Trigger) else str(value)


def test_every_state_and_trigger_pair_is_either_allowed_or_refused() -> None:
    assert len(ALL_PAIRS) == 49
    assert len(ALLOWED_PAIRS) == 13
    assert len(REFUSED_PAIRS) == 36
    assert set(ALLOWED_PAIRS) | set(REFUSED_PAIRS) == set(ALL_PAIRS)


def test_the_table_has_exactly_the_rows_the_design_lists() -> None:
    assert TRANSITIONS == EXPECTED


@pytest.mark.parametrize("pair", ALLOWED_PAIRS, ids=_pair_id)
def test_an_allowed_pair_reaches_the_listed_target(pair: tuple[State, Trigger]) -> None:
    state, trigger = pair
    assert fire(7, state, trigger) is EXPECTED[pair]
    assert target(state, trigger) is EXPECTED[pair]


@pytest.mark.parametrize("pair", REFUSED_PAIRS, ids=_pair_id)
def test_a_refused_pair_raises_invalid_transition_naming_state_and_allowed_triggers(
    pair: tuple[State, Trigger],
) -> None:
    state, trigger = pair
    allowed = [t.value for t in EXPECTED_ALLOWED[state]]

    with pytest.raises(InvalidTransition) as caught:
        fire(7, state, trigger)

    error = caught.value
    assert error.workflow_id == 7
    assert error.state == state.value
    assert error.action == trigger.value
    assert error.allowed == allowed
    allowed_text = ", ".join(allowed) if allowed else "nothing"
    assert str(error) == (
        f"workflow 7 is {state.value}; cannot {trigger.value}; allowed: {allowed_text}"
    )


@pytest.mark.parametrize("pair", REFUSED_PAIRS, ids=_pair_id)
def test_target_of_a_refused_pair_is_none(pair: tuple[State, Trigger]) -> None:
    state, trigger = pair
    assert target(state, trigger) is None


def test_invalid_transition_is_a_domain_error() -> None:
    with pytest.raises(DomainError):
        fire(1, State.COMPLETE, Trigger.RETRY)


@pytest.mark.parametrize("state", list(State), ids=_value_id)
def test_allowed_triggers_lists_the_states_rows_in_table_order(state: State) -> None:
    assert allowed_triggers(state) == EXPECTED_ALLOWED[state]


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (State.INIT, Trigger.PREPARE),
        (State.PREPARE, Trigger.EXECUTE),
        (State.EXECUTE, Trigger.VALIDATE),
        (State.VALIDATE, Trigger.COMPLETE),
        (State.FAILED, Trigger.RETRY),
        (State.COMPLETE, None),
        (State.CANCELLED, None),
    ],
    ids=_value_id,
)
def test_next_trigger_is_the_forward_trigger_retry_when_failed_else_none(
    state: State, expected: Trigger | None
) -> None:
    assert next_trigger(state) is expected


@pytest.mark.parametrize("state", list(State), ids=_value_id)
def test_next_trigger_is_always_one_the_table_allows(state: State) -> None:
    trigger = next_trigger(state)
    if trigger is None:
        assert state in {State.COMPLETE, State.CANCELLED}
    else:
        assert (state, trigger) in EXPECTED


def test_forward_triggers_move_one_step_along_the_happy_path() -> None:
    assert FORWARD_TRIGGER == {
        State.INIT: Trigger.PREPARE,
        State.PREPARE: Trigger.EXECUTE,
        State.EXECUTE: Trigger.VALIDATE,
        State.VALIDATE: Trigger.COMPLETE,
    }


@pytest.mark.parametrize(
    ("state", "terminal"),
    [
        (State.INIT, False),
        (State.PREPARE, False),
        (State.EXECUTE, False),
        (State.VALIDATE, False),
        (State.COMPLETE, True),
        (State.FAILED, True),
        (State.CANCELLED, True),
    ],
    ids=_value_id,
)
def test_is_terminal_is_true_only_for_complete_failed_and_cancelled(
    state: State, terminal: bool
) -> None:
    assert is_terminal(state) is terminal
    assert is_running(state) is not terminal


def test_running_and_final_states_are_the_designed_sets() -> None:
    assert RUNNING_STATES == (State.INIT, State.PREPARE, State.EXECUTE, State.VALIDATE)
    assert frozenset({State.COMPLETE, State.CANCELLED}) == FINAL_STATES


@pytest.mark.parametrize("state", [State.COMPLETE, State.CANCELLED], ids=_value_id)
def test_no_trigger_leaves_a_final_state(state: State) -> None:
    for trigger in Trigger:
        with pytest.raises(InvalidTransition):
            fire(3, state, trigger)


def test_states_and_triggers_use_the_api_names() -> None:
    assert [s.value for s in State] == [
        "INIT",
        "PREPARE",
        "EXECUTE",
        "VALIDATE",
        "COMPLETE",
        "FAILED",
        "CANCELLED",
    ]
    assert [t.value for t in Trigger] == [
        "prepare",
        "execute",
        "validate",
        "complete",
        "fail",
        "cancel",
        "retry",
    ]
