"""The original orchestrator's rows as events of ours: the mapping behind `import-original`.

Each row becomes one stream under its original id, made only of event types our domain already
has, with the original times in the events' `at`, so that folding the stream gives the row back
(state, retries, error_message, task_results, started_at, completed_at, transitions):

    workflows row N -> workflow-N
      creation   WorkflowStarted at started_at; WorkflowCreated at created_at + WorkflowLaunched
                 at started_at when both are known and differ; only WorkflowCreated when
                 started_at is NULL (never started: it waits for `start` or `next`)
      per visit  of a state, walking the transitions in id order:
                 StepStarted + StepSucceeded(result) on the visit that produced
                 task_results[state] (its last visit left by the state's forward trigger, else
                 its last visit; the worker's wrapper is unwrapped and its task_type kept);
                 StepStarted + StepFailed(error_message) before the last `fail`;
                 WorkflowTransitioned at the transition's created_at
    tasks row N -> task-N
      TaskCreated at created_at; retry_count failed runs (TaskRunStarted, TaskRunPickedUp,
      TaskRunFailed will_retry) at started_at; then by status: PENDING nothing; RUNNING a run
      started and picked up; COMPLETED/FAILED that run and its outcome at completed_at;
      CANCELLED TaskCancelled at completed_at (after a picked-up run if started_at is known).

Metadata: what the store's events carry (`actor`: "import", `command`: "ImportOriginal") plus
`imported_from`: "original", `source_table` and `source_id`; a transition adds
`source_transition_id`, the original's `transition_metadata` and its trigger text when that
differs; the first event keeps the row's status, counters, error and times as `source_row`.

Not carried over exactly, so kept in `source_row`: completed_at is the time of the move into the
final state; an error_message left on a workflow retried since (our retry clears it) stays only on
its StepFailed; the error of a run before the last one is not known; a COMPLETED task's NULL
result becomes {}. A row whose transitions do not walk the transition table from INIT to its
status, or disagree with its retries or task_results, is refused, naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.domain import events as ev
from orchestrator.domain import tasks as tk
from orchestrator.domain.states import State, Trigger
from orchestrator.domain.transitions import FORWARD_TRIGGER, TRANSITIONS
from orchestrator.history.original_rows import TaskRow, TransitionRow, UnreadableRow, WorkflowRow

Meta = dict[str, Any]
#: The metadata of every imported event, beside its source table and id.
IMPORT_METADATA: Meta = {
    "actor": "import",
    "command": "ImportOriginal",
    "imported_from": "original",
}
#: The built-in task of each state that runs one.
_TASK_NAMES = {
    State.INIT: "initialize",
    State.PREPARE: "prepare",
    State.EXECUTE: "execute",
    State.VALIDATE: "validate",
    State.COMPLETE: "finalize",
}
#: The trigger of each move of the transition table, found from its two states.
_MOVES = {(source, to): trigger for (source, trigger), to in TRANSITIONS.items()}
_TRIGGER_NAMES = frozenset(trigger.value for trigger in Trigger)
_LOST_ERROR = "failed (the original kept no error message for this run)"


@dataclass(frozen=True)
class _Visit:
    """A stay in one state: entered at `entered`, left by `leave` (None: it is there now)."""

    state: State
    entered: datetime
    leave: TransitionRow | None
    trigger: Trigger | None
    left: datetime


def workflow_events(row: WorkflowRow) -> list[tuple[ev.Event, Meta]]:
    """The events of one original workflow, each with its metadata."""
    meta: Meta = {**IMPORT_METADATA, "source_table": "workflows", "source_id": row.id}
    created = _creation(row)
    pairs: list[tuple[ev.Event, Meta]] = [(e, meta) for e in created]
    pairs[0] = (created[0], {**meta, "source_row": source_row(row)})
    visits = _visits(row, created[-1].at)
    results = _results(row)
    owners = _result_owners(row, visits, results)
    fails = [i for i, visit in enumerate(visits) if visit.trigger is Trigger.FAIL]
    for i, visit in enumerate(visits):
        state = visit.state
        if i in owners:
            result, task = results[state]
            pairs.append((ev.StepStarted(at=visit.entered, state=state, task=task), meta))
            pairs.append((ev.StepSucceeded(at=visit.left, state=state, result=result), meta))
        if fails and i == fails[-1] and row.error_message is not None:
            began = ev.StepStarted(at=visit.entered, state=state, task=_TASK_NAMES[state])
            failed = ev.StepFailed(at=visit.left, state=state, error=row.error_message)
            pairs += [(began, meta), (failed, meta)]
        if visit.leave is not None and visit.trigger is not None:
            moved = ev.WorkflowTransitioned(
                at=visit.left,
                from_state=state,
                to_state=visit.leave.to_state,
                trigger=visit.trigger,
            )
            pairs.append((moved, {**meta, **_transition_meta(visit.leave, visit.trigger)}))
    return pairs


def _creation(row: WorkflowRow) -> list[ev.Event]:
    fields: dict[str, Any] = {
        "workflow_id": row.id,
        "name": row.name,
        "description": row.description,
        "config": row.config,
    }
    if row.started_at is None:
        first = row.transitions[0].at if row.transitions else None
        at = row.created_at or first or row.updated_at
        if at is None:
            raise UnreadableRow("workflows", row.id, "it has no created_at or started_at")
        return [ev.WorkflowCreated(at=at, **fields)]
    if row.created_at is None or row.created_at == row.started_at:
        return [ev.WorkflowStarted(at=row.started_at, auto_start=True, **fields)]
    return [ev.WorkflowCreated(at=row.created_at, **fields), ev.WorkflowLaunched(at=row.started_at)]


def _visits(row: WorkflowRow, began: datetime) -> list[_Visit]:
    state, entered = State.INIT, began
    visits: list[_Visit] = []
    for move in row.transitions:
        if move.from_state is None and move.to_state is State.INIT and not visits:
            continue  # the record of the workflow's creation, not a move
        source = move.from_state or state
        if source is not state:
            raise UnreadableRow(
                "workflow_transitions",
                move.id,
                f"it moves workflow {row.id} from {source.name}, which is then in {state.name}",
            )
        trigger = _MOVES.get((state, move.to_state))
        named = (move.trigger or "").strip().lower()
        if trigger is None or (named in _TRIGGER_NAMES and named != trigger.value):
            raise UnreadableRow(
                "workflow_transitions",
                move.id,
                f"{state.name} -> {move.to_state.name} by {move.trigger!r} is not a move of the "
                "state machine",
            )
        left = move.at or entered
        visits.append(_Visit(state, entered, move, trigger, left))
        state, entered = move.to_state, left
    visits.append(_Visit(state, entered, None, None, entered))
    if state is not row.state:
        raise UnreadableRow(
            "workflows",
            row.id,
            f"its transitions end in {state.name}, its status is {row.state.name}",
        )
    retried = sum(visit.trigger is Trigger.RETRY for visit in visits)
    if retried != row.retries:
        raise UnreadableRow(
            "workflows", row.id, f"retries is {row.retries} but it has {retried} retry transitions"
        )
    return visits


def _results(row: WorkflowRow) -> dict[State, tuple[dict[str, Any], str]]:
    found: dict[State, tuple[dict[str, Any], str]] = {}
    for key, entry in row.task_results.items():
        state = State.__members__.get(key.strip().upper())
        if state is None or state not in _TASK_NAMES:
            reason = f"task_results has an entry {key!r}, not a state that runs a task"
            raise UnreadableRow("workflows", row.id, reason)
        if not isinstance(entry, dict):
            raise UnreadableRow("workflows", row.id, f"task_results[{key!r}] is not an object")
        task = _TASK_NAMES[state]
        if isinstance(entry.get("success"), bool) and isinstance(entry.get("result"), dict):
            named = entry.get("task_type")
            task = named if isinstance(named, str) and named else task
            entry = entry["result"]
        found[state] = (entry, task)
    return found


def _result_owners(
    row: WorkflowRow, visits: list[_Visit], results: dict[State, Any]
) -> dict[int, State]:
    best: dict[State, tuple[int, bool]] = {}
    for i, visit in enumerate(visits):
        if visit.state in results:
            forward = visit.trigger is not None and visit.trigger is FORWARD_TRIGGER.get(
                visit.state
            )
            if visit.state not in best or forward or not best[visit.state][1]:
                best[visit.state] = (i, forward)
    for state in results:
        if state not in best:
            reason = f"task_results has a {state.name} result but it never reached {state.name}"
            raise UnreadableRow("workflows", row.id, reason)
    return {i: state for state, (i, _) in best.items()}


def _transition_meta(move: TransitionRow, trigger: Trigger) -> Meta:
    meta: Meta = {"source_transition_id": move.id}
    if move.metadata is not None:
        meta["transition_metadata"] = move.metadata
    if move.trigger is not None and move.trigger.strip().lower() != trigger.value:
        meta["source_trigger"] = move.trigger
    return meta


def task_events(row: TaskRow) -> list[tuple[tk.TaskEvent, Meta]]:
    """The events of one original standalone task, each with its metadata."""
    created = row.created_at or row.started_at or row.completed_at
    if created is None:
        raise UnreadableRow("tasks", row.id, "it has no created_at")
    run_at = row.started_at or created
    end_at = row.completed_at or run_at
    made: list[tk.TaskEvent] = [
        tk.TaskCreated(
            at=created,
            task_id=row.id,
            workflow_id=row.workflow_id,
            name=row.name,
            task_type=row.task_type,
            description=row.description,
            config=row.config,
            max_retries=row.max_retries,
        )
    ]

    def run(attempt: int) -> list[tk.TaskEvent]:
        return [
            tk.TaskRunStarted(at=run_at, attempt=attempt),
            tk.TaskRunPickedUp(at=run_at, attempt=attempt),
        ]

    for attempt in range(1, row.retry_count + 1):
        last = attempt == row.retry_count and row.status != "FAILED"
        error = row.error_message if last and row.error_message else _LOST_ERROR
        made += [*run(attempt), tk.TaskRunFailed(at=run_at, error=error, will_retry=True)]
    if row.status in ("RUNNING", "COMPLETED", "FAILED") or (
        row.status == "CANCELLED" and row.started_at is not None
    ):
        made += run(row.retry_count + 1)
    if row.status == "COMPLETED":
        made.append(tk.TaskRunSucceeded(at=end_at, result=row.result or {}))
    elif row.status == "FAILED":
        error = row.error_message or _LOST_ERROR
        made.append(tk.TaskRunFailed(at=end_at, error=error, will_retry=False))
    elif row.status == "CANCELLED":
        made.append(tk.TaskCancelled(at=end_at))
    meta: Meta = {**IMPORT_METADATA, "source_table": "tasks", "source_id": row.id}
    first = {**meta, "source_row": source_row(row)}
    return [(event, first if i == 0 else meta) for i, event in enumerate(made)]


def source_row(row: WorkflowRow | TaskRow) -> Meta:
    """The row's status, counters, error and times, as the first event's metadata keeps them."""
    fields: Meta = {"error_message": row.error_message}
    if isinstance(row, WorkflowRow):
        fields.update(status=row.state.name, retries=row.retries, updated_at=row.updated_at)
    else:
        fields.update(status=row.status, retry_count=row.retry_count)
    for name in ("created_at", "started_at", "completed_at"):
        fields[name] = getattr(row, name)
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in fields.items()
    }
