"""`orchestrator replay`: a workflow's history straight from the log, with the state after each
event, and whether the folded state agrees with the read model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from orchestrator.domain.aggregates import WORKFLOW
from orchestrator.domain.events import (
    Event,
    StepAttemptFailed,
    StepFailed,
    StepProgressed,
    StepStarted,
    StepSucceeded,
    WorkflowStarted,
    WorkflowTransitioned,
)
from orchestrator.domain.workflow import Workflow
from orchestrator.eventstore.base import EventStore, RecordedEvent

_encoder = msgspec.json.Encoder()


@dataclass
class ReplayedEvent:
    """One event of the stream and the workflow right after it."""

    recorded: RecordedEvent
    event: Event
    after: Workflow


async def replay(
    store: EventStore, workflow_id: int, at_version: int | None = None
) -> list[ReplayedEvent]:
    """The stream folded event by event (up to `at_version`); empty if the workflow is unknown."""
    stream = await store.read_stream(WORKFLOW.stream_id(workflow_id), at_version)
    events = WORKFLOW.decode_all(stream)
    return [
        ReplayedEvent(recorded, event, after)
        for recorded, event, after in zip(stream, events, WORKFLOW.states(events), strict=True)
    ]


def key_fields(event: Event) -> str:
    """The payload fields worth a column, in a few words."""
    if isinstance(event, WorkflowTransitioned):
        return f"{event.from_state.value} -> {event.to_state.value} ({event.trigger.value})"
    if isinstance(event, StepStarted):
        return f"{event.state.value} step: {event.task}"
    if isinstance(event, StepSucceeded):
        return f"{event.state.value} result {_short(event.result)}"
    if isinstance(event, StepFailed):
        return f"{event.state.value} error: {event.error}"[:70]
    if isinstance(event, StepAttemptFailed):
        return f"{event.state.value} attempt {event.attempt} error: {event.error}"[:70]
    if isinstance(event, StepProgressed):
        return f"{event.state.value} {event.fraction:.0%} {event.note or ''}".rstrip()[:70]
    if isinstance(event, WorkflowStarted):
        return f"name={event.name!r} auto_start={event.auto_start}"
    fields = {k: v for k, v in msgspec.structs.asdict(event).items() if k != "at"}
    return _short(fields)


def _short(value: Any, width: int = 56) -> str:
    text = _encoder.encode(value).decode()
    return text if len(text) <= width else text[: width - 3] + "..."


def describe(workflow: Workflow) -> str:
    """The state after an event, in a few words."""
    step = f", {workflow.step.value} step running" if workflow.step else ""
    deleted = ", deleted" if workflow.deleted else ""
    return f"{workflow.state.value}{step}{deleted}"


def table(replayed: list[ReplayedEvent]) -> list[str]:
    """The replay as lines of a table."""
    header = (
        f"{'pos':>7} {'ver':>4}  {'recorded at (UTC)':<26}  {'event':<21} "
        f"{'details':<56}  state after"
    )
    lines = [header, "-" * len(header)]
    for item in replayed:
        recorded = item.recorded
        stamp = recorded.recorded_at.strftime("%Y-%m-%d %H:%M:%S.%f")
        lines.append(
            f"{recorded.position:>7} {recorded.version:>4}  {stamp:<26}  {recorded.type:<21} "
            f"{key_fields(item.event)[:56]:<56}  {describe(item.after)}"
        )
    return lines


def differences(folded: Workflow, read_model: Workflow | None) -> list[str]:
    """Fields where the read model differs from the folded stream (empty when they agree)."""
    if read_model is None:
        return ["the read model has no row for this workflow"]
    mine = msgspec.structs.asdict(folded)
    theirs = msgspec.structs.asdict(read_model)
    return [name for name in mine if mine[name] != theirs.get(name)]


def missing_version(workflow_id: int, version: int, count: int) -> str:
    """What `replay --at-version` and `GET /workflow/{id}?at_version=` say past the end."""
    return f"workflow {workflow_id} has no version {version}: it has {count} events"
