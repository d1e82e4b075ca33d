"""The command service: load, decide, append with the expected version, retry on conflict.

It keeps the workflows it has recently touched in memory, with their stream version, so a command
costs one append and no read; a conflict (someone else appended) reloads the stream and decides
again against the fresh state.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from orchestrator.domain.commands import Command, StartWorkflow
from orchestrator.domain.errors import WorkflowNotFound
from orchestrator.domain.events import (
    Event,
    WorkflowTransitioned,
    decode_event,
    encode_event,
    event_type,
    stream_id,
)
from orchestrator.domain.workflow import Workflow, decide, evolve, fold
from orchestrator.eventstore.base import EventStore, NewEvent
from orchestrator.eventstore.errors import ConcurrencyConflict

log = logging.getLogger("orchestrator.transitions")

_MAX_ATTEMPTS = 20


class Outcome(msgspec.Struct, frozen=True):
    """A command's result: the workflow after it, and the log position to wait for before reads."""

    workflow: Workflow
    position: int
    events: tuple[Event, ...]


class WorkflowService:
    """Carries out commands against the log, one stream per workflow."""

    def __init__(self, store: EventStore, *, cache_size: int = 50_000) -> None:
        self._store = store
        self._cache: OrderedDict[int, Workflow] = OrderedDict()
        self._cache_size = cache_size
        self._next_id = 1
        #: The position of the last event this process appended (reads wait for it).
        self.last_position = 0

    def reserve_ids_after(self, highest_id: int) -> None:
        """New workflows get ids above `highest_id` (ids of deleted workflows are never reused)."""
        self._next_id = max(self._next_id, highest_id + 1)

    async def load(self, workflow_id: int, *, fresh: bool = False) -> Workflow | None:
        """The workflow folded from its stream (from memory unless `fresh`); None if none."""
        if not fresh:
            cached = self._cache.get(workflow_id)
            if cached is not None:
                return cached
        recorded = await self._store.read_stream(stream_id(workflow_id))
        workflow = fold(decode_event(event.data) for event in recorded)
        if workflow is not None:
            self._remember(workflow)
        return workflow

    async def start(
        self, command: StartWorkflow, metadata: dict[str, str], then: Sequence[Command] = ()
    ) -> Outcome:
        """Create a workflow under the next free id; `then` runs in the same append."""
        for _ in range(_MAX_ATTEMPTS):
            workflow_id = self._next_id
            self._next_id += 1
            new = msgspec.structs.replace(command, workflow_id=workflow_id)
            events = _decide_all(None, [new, *then])
            try:
                return await self._append(None, workflow_id, events, metadata, [new, *then])
            except ConcurrencyConflict:
                continue  # another process took this id; try the next one
        raise ConcurrencyConflict(stream_id(self._next_id), 0, -1)

    async def execute(
        self, workflow_id: int, command: Command, metadata: dict[str, str]
    ) -> Outcome:
        """Decide `command` against the current state and append its events."""
        return await self.execute_all(workflow_id, [command], metadata)

    async def execute_all(
        self, workflow_id: int, commands: Sequence[Command], metadata: dict[str, str]
    ) -> Outcome:
        """Decide `commands` one after the other and append all their events atomically.

        If any of them is refused, nothing is appended.
        """
        fresh = False
        for _ in range(_MAX_ATTEMPTS):
            workflow = await self.load(workflow_id, fresh=fresh)
            if workflow is None or workflow.deleted:
                raise WorkflowNotFound(workflow_id)
            events = _decide_all(workflow, commands)
            try:
                return await self._append(workflow, workflow_id, events, metadata, commands)
            except ConcurrencyConflict:
                fresh = True
        raise ConcurrencyConflict(stream_id(workflow_id), -1, -1)

    async def _append(
        self,
        workflow: Workflow | None,
        workflow_id: int,
        events: list[Event],
        metadata: dict[str, str],
        commands: Sequence[Command],
    ) -> Outcome:
        meta = {**metadata, "command": "+".join(type(c).__name__ for c in commands)}
        new = [NewEvent(type=event_type(e), data=encode_event(e), metadata=meta) for e in events]
        expected = workflow.version if workflow is not None else 0
        result = await self._store.append(stream_id(workflow_id), expected, new)
        self.last_position = max(self.last_position, result.position)
        after = workflow
        for event in events:
            after = evolve(after, event)
            if isinstance(event, WorkflowTransitioned):
                _log_transition(workflow_id, event, after)
        assert after is not None
        self._remember(after)
        return Outcome(after, result.position, tuple(events))

    def _remember(self, workflow: Workflow) -> None:
        self._cache[workflow.workflow_id] = workflow
        self._cache.move_to_end(workflow.workflow_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


def _now() -> datetime:
    return datetime.now(UTC)


def _decide_all(workflow: Workflow | None, commands: Sequence[Command]) -> list[Event]:
    now = _now()
    events: list[Event] = []
    for command in commands:
        decided = decide(workflow, command, now)
        for event in decided:
            workflow = evolve(workflow, event)
        events.extend(decided)
    return events


def _log_transition(workflow_id: int, event: WorkflowTransitioned, after: Workflow) -> None:
    previous = after.transitions[-2].at if len(after.transitions) > 1 else after.started_at
    duration = (event.at - previous).total_seconds() if previous else 0.0
    log.info(
        "workflow %d %s -> %s (%s) after %.3fs",
        workflow_id,
        event.from_state.value,
        event.to_state.value,
        event.trigger.value,
        duration,
    )
