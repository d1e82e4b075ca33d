"""How a read-model state is packed (projections/packed_states.py): with its kind's dictionary,
the first settled state no bigger than MAX_DICTIONARY; in flight only where asked to."""

from __future__ import annotations

from orchestrator.domain.states import State
from orchestrator.domain.workflow import Workflow
from orchestrator.projections.models import WORKFLOWS, Row
from orchestrator.projections.packed_states import MAX_DICTIONARY, StateCodec


def row(workflow_id: int, state: State, *, config_bytes: int = 0) -> Row:
    settled = state is State.COMPLETE
    workflow = Workflow(
        workflow_id=workflow_id,
        name=f"report {workflow_id}",
        state=state,
        version=1,
        finalized=settled,
        config={"blob": "x" * config_bytes} if config_bytes else {},
    )
    return WORKFLOWS.row(workflow_id, workflow)


def test_a_settled_state_past_the_cap_is_stored_as_text_and_teaches_no_dictionary() -> None:
    codec = StateCodec()
    big = row(1, State.COMPLETE, config_bytes=MAX_DICTIONARY)
    stored, dictionary = codec.pack(big)
    assert stored == big.state.decode() and dictionary is None

    small = row(2, State.COMPLETE)
    stored, dictionary = codec.pack(small)
    assert isinstance(stored, bytes) and dictionary is not None
    assert dictionary[1] == small.state  # the first settled state within the cap
    assert codec.unpack(stored) == small.state
    # The big one again, now that the kind has a dictionary: packed with it like any other.
    stored, _ = codec.pack(big)
    assert isinstance(stored, bytes) and codec.unpack(stored) == big.state


def test_a_state_in_flight_is_packed_only_when_asked_and_once_its_kind_has_a_dictionary() -> None:
    for in_flight in (False, True):
        codec = StateCodec(in_flight=in_flight)
        running = row(1, State.EXECUTE)
        assert running.needs_engine
        assert codec.pack(running) == (running.state.decode(), None)  # no dictionary yet
        codec.pack(row(2, State.COMPLETE))
        stored, dictionary = codec.pack(running)
        assert isinstance(stored, bytes) is in_flight
        assert (dictionary is not None) is in_flight
        assert codec.unpack(stored) == running.state
