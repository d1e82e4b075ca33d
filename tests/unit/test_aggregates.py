"""The registry of aggregate kinds: stream naming, decoding (with upcasting) and folding."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from orchestrator.domain import tasks as task_domain
from orchestrator.domain.aggregates import KINDS, TASK, WORKFLOW, kind_of_stream
from orchestrator.domain.events import (
    Event,
    StepStarted,
    StepSucceeded,
    WorkflowStarted,
    WorkflowTransitioned,
    encode_event,
    stream_id,
)
from orchestrator.domain.states import State, Trigger
from orchestrator.domain.upcasting import CURRENT_SCHEMA
from orchestrator.domain.workflow import Workflow
from tests.fixtures.make_schema1_log import FIXTURE

AT = datetime(2026, 1, 1, tzinfo=UTC)

HISTORY: list[Event] = [
    WorkflowStarted(at=AT, workflow_id=7, name="w", config={}, auto_start=True),
    StepStarted(at=AT, state=State.INIT, task="initialize"),
    StepSucceeded(at=AT, state=State.INIT, result={"ok": True}),
    WorkflowTransitioned(
        at=AT, from_state=State.INIT, to_state=State.PREPARE, trigger=Trigger.PREPARE
    ),
]


@pytest.mark.parametrize("aggregate_id", [0, 1, 7, 123456789])
def test_stream_names_round_trip(aggregate_id: int) -> None:
    for kind in KINDS:
        name = kind.stream_id(aggregate_id)
        assert name == f"{kind.name}-{aggregate_id}"
        assert kind.parse_stream(name) == aggregate_id
        assert kind_of_stream(name) == (kind, aggregate_id)


def test_stream_names_are_the_domain_ones() -> None:
    assert WORKFLOW.stream_id(3) == stream_id(3)
    assert TASK.stream_id(3) == task_domain.task_stream_id(3)


@pytest.mark.parametrize(
    "stream",
    [
        "workflow-x",
        "task-",
        "workflow-",
        "other-1",
        "workflow-1x",
        "tasks-1",
        "",
        "workflow-²",
        "task-٣",
    ],
)
def test_other_streams_are_refused(stream: str) -> None:
    assert WORKFLOW.parse_stream(stream) is None
    assert TASK.parse_stream(stream) is None
    assert kind_of_stream(stream) is None


def test_a_kind_refuses_the_other_kinds_streams() -> None:
    assert WORKFLOW.parse_stream("task-1") is None
    assert TASK.parse_stream("workflow-1") is None


def test_fold_equals_evolve_step_by_step() -> None:
    state: Workflow | None = None
    steps = []
    for event in HISTORY:
        state = WORKFLOW.evolve(state, event)
        steps.append(state)
    assert WORKFLOW.fold(HISTORY) == state
    assert list(WORKFLOW.states(HISTORY)) == steps
    assert WORKFLOW.fold([]) is None
    assert WORKFLOW.fold(HISTORY[2:], steps[1]) == state


def test_fold_recorded_decodes_then_folds() -> None:
    class Stored:
        def __init__(self, event: Event) -> None:
            self.data = encode_event(event)
            self.schema_version = CURRENT_SCHEMA

    stored = [Stored(event) for event in HISTORY]
    assert WORKFLOW.decode_all(stored) == HISTORY
    assert WORKFLOW.fold_recorded(stored) == WORKFLOW.fold(HISTORY)
    assert WORKFLOW.fold_recorded([]) is None


def _schema1(event_type: str) -> bytes:
    for line in FIXTURE.read_text().splitlines():
        exported = json.loads(line)
        if exported["type"] == event_type:
            assert exported["schema_version"] == 1
            data: str = exported["data"]
            return data.encode()
    raise AssertionError(f"no {event_type} in {FIXTURE}")


def test_decode_upcasts_a_schema1_payload() -> None:
    transitioned = WORKFLOW.decode(_schema1("WorkflowTransitioned"), 1)
    assert isinstance(transitioned, WorkflowTransitioned)
    assert (transitioned.from_state, transitioned.to_state) == (State.INIT, State.PREPARE)
    succeeded = WORKFLOW.decode(_schema1("StepSucceeded"), 1)
    assert isinstance(succeeded, StepSucceeded)
    assert succeeded.result["status"] == "initialized"


def test_kinds_carry_their_first_events_and_statuses() -> None:
    assert isinstance(HISTORY[0], WORKFLOW.first_events)
    assert WORKFLOW.statuses == (
        "INIT",
        "PREPARE",
        "EXECUTE",
        "VALIDATE",
        "COMPLETE",
        "FAILED",
        "CANCELLED",
    )
    assert TASK.statuses == ("PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED")
    assert TASK.first_events == (task_domain.TaskCreated,)
    assert WORKFLOW.state_type is Workflow
    assert TASK.state_type is task_domain.Task
