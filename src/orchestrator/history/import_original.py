"""`orchestrator import-original PATH`: the original orchestrator's database, into our log.

Users move here from the original FastAPI + SQLAlchemy service (same HTTP API), which keeps only
current rows. Its workflows and tasks are read (`original_rows`), turned into the event streams our
domain would have written (`original_events`, which documents the mapping), and appended here, so
their history survives the move and their ids keep working.

- **Checked before written.** Each stream is folded through the domain's legality rules (what
  `orchestrator verify` asks) and must end in the row's status and retries; a row that cannot be
  imported faithfully is refused, naming its table and id, and nothing is written.
- **All or nothing.** Every stream is appended in one transaction (`EventStore.append_streams`),
  each at expected version 0, so a stream created meanwhile makes the whole import fail.
- **Idempotent.** A stream already in the target whose first event says it was imported from the
  original row of the same id is skipped, so a second run adds nothing (and a source that gained
  rows since adds only those). A stream of the same id with any other origin refuses the import.
- **In flight.** A workflow in a running state (or COMPLETE without finalize's result) is imported
  in its state with no step running. The original keeps no auto_start flag, so a workflow it
  started counts as automatic: at the next `serve` the engine picks it up, runs its current
  state's task from the beginning (whatever the original was doing is redone: tasks are at least
  once) and drives it on. A workflow never started (started_at NULL) waits for `start` or `next`.
  Pending and running standalone tasks are run again.

The read models are brought up to date by the caller (the projector catches up), and the ids the
server hands out next come after the imported ones (the runtime reserves ids above the read
models' highest).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.domain import events as ev
from orchestrator.domain import tasks as tk
from orchestrator.domain.legality import task_violation, workflow_violation
from orchestrator.domain.upcasting import CURRENT_SCHEMA
from orchestrator.domain.workflow import evolve
from orchestrator.eventstore.base import EventStore, NewEvent, StreamAppend
from orchestrator.history.original_events import Meta, task_events, workflow_events
from orchestrator.history.original_rows import ImportRefused, Original, UnreadableRow


@dataclass(frozen=True)
class StreamPlan:
    """One stream to write: its events, and the original row they come from."""

    stream_id: str
    source_table: str
    source_id: int
    events: list[NewEvent]
    transitions: int = 0


@dataclass
class ImportSummary:
    """What an import wrote, and what it found imported already."""

    workflows: int = 0
    transitions: int = 0
    tasks: int = 0
    skipped_workflows: int = 0
    skipped_tasks: int = 0


def plan_import(original: Original) -> list[StreamPlan]:
    """Every row as the events of its stream, each stream checked by a legal fold."""
    plans: list[StreamPlan] = []
    for row in original.workflows:
        pairs = workflow_events(row)
        folded = _fold("workflows", row.id, [e for e, _ in pairs], workflow_violation, evolve)
        if folded.state is not row.state or folded.retries != row.retries:
            reason = f"it would import as {folded.state.name} with {folded.retries} retries"
            raise UnreadableRow("workflows", row.id, reason)
        events = [_new(ev.event_type(e), ev.encode_event(e), meta) for e, meta in pairs]
        moves = sum(isinstance(e, ev.WorkflowTransitioned) for e, _ in pairs)
        plans.append(StreamPlan(ev.stream_id(row.id), "workflows", row.id, events, moves))
    for task in original.tasks:
        made = task_events(task)
        done = _fold("tasks", task.id, [e for e, _ in made], task_violation, tk.evolve_task)
        if done.status.name != task.status or done.retry_count != task.retry_count:
            reason = f"it would import as {done.status.name} after {done.retry_count} retries"
            raise UnreadableRow("tasks", task.id, reason)
        events = [_new(type(e).__name__, tk.encode_task_event(e), meta) for e, meta in made]
        plans.append(StreamPlan(tk.task_stream_id(task.id), "tasks", task.id, events))
    return plans


async def write_import(
    store: EventStore,
    plans: Sequence[StreamPlan],
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Append every stream not imported before, in one transaction; refuse a foreign stream.
    `progress` is told how many of the plans were checked."""
    summary = ImportSummary()
    todo: list[StreamPlan] = []
    for index, plan in enumerate(plans, start=1):
        if progress is not None:
            progress(index)
        workflow = plan.source_table == "workflows"
        existing = await store.read_stream(plan.stream_id, up_to_version=1)
        if not existing:
            todo.append(plan)
            summary.workflows += workflow
            summary.tasks += not workflow
            summary.transitions += plan.transitions
            continue
        mark = existing[0].metadata
        if mark.get("imported_from") != "original" or mark.get("source_id") != plan.source_id:
            raise ImportRefused(
                f"{plan.stream_id} already exists in the target and was not imported from the "
                "original; import into a new database"
            )
        summary.skipped_workflows += workflow
        summary.skipped_tasks += not workflow
    if todo:
        await store.append_streams(
            [StreamAppend(stream_id=p.stream_id, expected_version=0, events=p.events) for p in todo]
        )
    return summary


def _fold(
    table: str,
    row_id: int,
    events: Sequence[Any],
    violation: Callable[[Any, Any], str | None],
    step: Callable[[Any, Any], Any],
) -> Any:
    state: Any = None
    for event in events:
        reason = violation(state, event)
        if reason is not None:
            raise UnreadableRow(table, row_id, f"its history would not fold legally: {reason}")
        state = step(state, event)
    return state


def _new(type_: str, data: bytes, metadata: Meta) -> NewEvent:
    return NewEvent(type=type_, data=data, metadata=metadata, schema_version=CURRENT_SCHEMA)
