"""Command services: load an aggregate, decide, append with the expected version, retry on conflict.

A service keeps the aggregates it has recently touched in memory, with their stream version, so
a command costs one append and no read; a conflict (someone else appended) reloads the stream and
decides again against the fresh state. One generic service serves workflows and standalone tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from orchestrator.domain import tasks as task_domain
from orchestrator.domain import workflow as workflow_domain
from orchestrator.domain.aggregates import TASK, WORKFLOW, AggregateType
from orchestrator.domain.commands import Command
from orchestrator.domain.errors import DomainError, TaskNotFound, WorkflowNotFound
from orchestrator.domain.events import (
    Event,
    StepFailed,
    StepSucceeded,
    WorkflowTransitioned,
    encode_event,
)
from orchestrator.domain.upcasting import CURRENT_SCHEMA
from orchestrator.engine.claims import unrecorded_claim
from orchestrator.engine.ownership import current_fence
from orchestrator.eventstore.base import EventStore, NewEvent
from orchestrator.eventstore.errors import ConcurrencyConflict
from orchestrator.eventstore.keys import record_of
from orchestrator.sized_cache import SizedCache, charge

log = logging.getLogger("orchestrator.transitions")

_MAX_ATTEMPTS = 20


class Versioned(Protocol):
    """What a service needs to know of an aggregate."""

    @property
    def version(self) -> int:
        """Events folded so far."""

    @property
    def deleted(self) -> bool:
        """True after the tombstone."""


S = TypeVar("S", bound=Versioned)
C = TypeVar("C")
E = TypeVar("E")


@dataclass(frozen=True)
class AggregateKind(Generic[S, C, E]):
    """How a service stores, folds and decides one kind of aggregate.

    The name, streams, decoding and folding come from the domain's registry (`aggregate`);
    this adds what only commands need.
    """

    aggregate: AggregateType[S, E]
    encode: Callable[[E], bytes]
    decide: Callable[[S | None, C, datetime], list[E]]
    not_found: Callable[[int], Exception]
    #: The creation command with the id the service allocated.
    with_id: Callable[[C, int], C]
    #: Called with the events of each append once they are recorded (for logs).
    on_append: Callable[[int, Sequence[E]], None] | None = None

    @property
    def name(self) -> str:
        """The kind's name ("workflow", "task")."""
        return self.aggregate.name

    def stream_id(self, aggregate_id: int) -> str:
        """The log stream that holds one aggregate's events."""
        return self.aggregate.stream_id(aggregate_id)

    def decode(self, data: bytes, schema_version: int) -> E:
        """A stored payload as an event (upcast from an older schema if need be)."""
        return self.aggregate.decode(data, schema_version)

    def evolve(self, state: S | None, event: E) -> S:
        """The state after `event`."""
        return self.aggregate.evolve(state, event)


class Outcome(msgspec.Struct, frozen=True):
    """A command's result: the state after it, and the log position to wait for before reads."""

    state: Any
    position: int

    @property
    def workflow(self) -> workflow_domain.Workflow:
        """The state, for outcomes of workflow commands."""
        state: workflow_domain.Workflow = self.state
        return state

    @property
    def task(self) -> task_domain.Task:
        """The state, for outcomes of task commands."""
        state: task_domain.Task = self.state
        return state


class AggregateService(Generic[S, C, E]):
    """Carries out commands against the log, one stream per aggregate."""

    def __init__(
        self,
        kind: AggregateKind[S, C, E],
        store: EventStore,
        *,
        cache_size: int = 50_000,
        cache_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.kind = kind
        self._store = store
        # Charged what each aggregate's events take decoded: big configs cannot fill memory.
        self._cache: SizedCache[int, S] = SizedCache(cache_size, cache_bytes)
        self._next_id = 1
        #: The position of the last event this service appended (reads wait for it).
        self.last_position = 0
        #: Told the events of each append once they are recorded (metrics, for one).
        self.observers: list[Callable[[int, Sequence[E]], None]] = []

    def reserve_ids_after(self, highest_id: int) -> None:
        """New aggregates get ids above `highest_id` (ids of deleted ones are never reused)."""
        self._next_id = max(self._next_id, highest_id + 1)

    async def load(self, aggregate_id: int, *, fresh: bool = False) -> S | None:
        """The aggregate folded from its stream (from memory unless `fresh`); None if none."""
        state, _ = await self._load_sized(aggregate_id, fresh=fresh)
        return state

    async def _load_sized(self, aggregate_id: int, *, fresh: bool) -> tuple[S | None, int]:
        """The aggregate and what its events are charged in the cache (see `charge`)."""
        if not fresh:
            cached = self._cache.get(aggregate_id)
            if cached is not None:
                return cached, self._cache.size_of(aggregate_id)
        stream = await self._store.read_stream(self.kind.stream_id(aggregate_id))
        state = self.kind.aggregate.fold_recorded(stream)
        size = sum(charge(recorded.data) for recorded in stream)
        if state is not None:
            self._remember(aggregate_id, state, size)
        return state, size

    async def create(self, command: C, metadata: dict[str, str], then: Sequence[C] = ()) -> Outcome:
        """Create an aggregate under the next free id; `then` runs in the same append."""
        for _ in range(_MAX_ATTEMPTS):
            # From the database where several processes may share the log (PostgreSQL);
            # counted here where one process has it.
            issued = await self._store.next_id(self.kind.name, self._next_id - 1)
            aggregate_id = self._next_id if issued is None else issued
            self._next_id = aggregate_id + 1
            commands = [self.kind.with_id(command, aggregate_id), *then]
            events, after = self._decide_all(None, commands)
            try:
                return await self._append(None, 0, aggregate_id, events, after, metadata, commands)
            except ConcurrencyConflict:
                continue  # another process took this id; try the next one
        raise ConcurrencyConflict(self.kind.stream_id(self._next_id), 0, -1)

    async def execute(self, aggregate_id: int, command: C, metadata: dict[str, str]) -> Outcome:
        """Decide `command` against the current state and append its events."""
        return await self.execute_all(aggregate_id, [command], metadata)

    async def execute_all(
        self, aggregate_id: int, commands: Sequence[C], metadata: dict[str, str]
    ) -> Outcome:
        """Decide `commands` one after the other and append all their events atomically.

        If any of them is refused, nothing is appended.
        """
        fresh = False
        for _ in range(_MAX_ATTEMPTS):
            state, size = await self._load_sized(aggregate_id, fresh=fresh)
            try:
                if state is None or state.deleted:
                    raise self.kind.not_found(aggregate_id)
                events, after = self._decide_all(state, commands)
            except DomainError:
                if fresh:
                    raise
                # A refusal is only final against the stream itself, not a remembered state
                # that another writer (or an append whose caller gave up) may have outdated.
                fresh = True
                continue
            try:
                return await self._append(
                    state, size, aggregate_id, events, after, metadata, commands
                )
            except ConcurrencyConflict:
                fresh = True
        raise ConcurrencyConflict(self.kind.stream_id(aggregate_id), -1, -1)

    def _decide_all(self, state: S | None, commands: Sequence[C]) -> tuple[list[E], S]:
        """The events of `commands`, each decided against the state the earlier ones left, and
        the state after all of them (each event evolved once: the append reuses it)."""
        now = datetime.now(UTC)
        events: list[E] = []
        for command in commands:
            decided = self.kind.decide(state, command, now)
            state = self.kind.aggregate.fold(decided, state)
            events.extend(decided)
        if state is None:  # decide returned no event for a creation: a bug in the domain
            raise RuntimeError(f"{commands} decided no event for a new {self.kind.name}")
        return events, state

    async def _append(
        self,
        state: S | None,
        size: int,
        aggregate_id: int,
        events: list[E],
        after: S,
        metadata: dict[str, str],
        commands: Sequence[C],
    ) -> Outcome:
        meta = {**metadata, "command": "+".join(type(c).__name__ for c in commands)}
        pending = unrecorded_claim()
        if pending is not None:  # says which request caused the events (see engine/claims.py)
            meta["idempotency_key"] = pending.claim.key
        new = [
            NewEvent(
                type=type(e).__name__,
                data=self.kind.encode(e),
                metadata=meta,
                schema_version=CURRENT_SCHEMA,
            )
            for e in events
        ]
        expected = state.version if state is not None else 0
        stream_id = self.kind.stream_id(aggregate_id)
        # A driver's appends carry its lease's fence (engine/ownership.py); commands carry none.
        fence = current_fence()
        if fence is not None:
            result = await self._store.append(
                stream_id,
                expected,
                new,
                idempotency=None if pending is None else pending.claim,
                fence=fence,
            )
        elif pending is None:
            result = await self._store.append(stream_id, expected, new)
        else:
            result = await self._store.append(stream_id, expected, new, idempotency=pending.claim)
            pending.recorded = record_of(pending.claim, stream_id, result.version, result.position)
        self.last_position = max(self.last_position, result.position)
        if self.kind.on_append is not None:
            self.kind.on_append(aggregate_id, events)
        for observe in self.observers:
            observe(aggregate_id, events)
        # `size` is what `state`'s events were charged when it was loaded: the cache entry may
        # have been evicted (or replaced) while the append was awaited, so it is no base.
        size += sum(charge(event.data) for event in new)
        self._remember(aggregate_id, after, size)
        return Outcome(after, result.position)

    def _remember(self, aggregate_id: int, state: S, size: int) -> None:
        cached = self._cache.get(aggregate_id)
        if cached is not None and cached.version > state.version:
            return  # a slower read must not replace what a newer append already left here
        self._cache.put(aggregate_id, state, size)


def _log_transitions(workflow_id: int, events: Sequence[Event]) -> None:
    # A step's outcome and the transition it fires are recorded in one append, so the line can
    # give the step's own duration (measured while it ran: a step resumed after a restart does
    # not count the time the server was down) and, for `fail`, its error.
    logs_transitions = log.isEnabledFor(logging.INFO)  # else only failures are logged
    outcome: StepSucceeded | StepFailed | None = None
    for event in events:
        if isinstance(event, StepSucceeded | StepFailed):
            outcome = event
            if isinstance(event, StepFailed):
                log.warning(
                    "workflow %d %s step failed after %.3fs: %s",
                    workflow_id,
                    event.state.value,
                    event.duration,
                    event.error,
                )
        elif isinstance(event, WorkflowTransitioned) and logs_transitions:
            line = f"workflow {workflow_id} {event.from_state.value} -> {event.to_state.value} "
            line += f"({event.trigger.value})"
            if outcome is not None:
                line += f" after {outcome.duration:.3f}s"
            if isinstance(outcome, StepFailed):
                line += f": {outcome.error}"
            log.info("%s", line)
            outcome = None


def _workflow_with_id(command: Command, workflow_id: int) -> Command:
    return msgspec.structs.replace(command, workflow_id=workflow_id)


def _task_with_id(command: task_domain.TaskCommand, task_id: int) -> task_domain.TaskCommand:
    return msgspec.structs.replace(command, task_id=task_id)


WORKFLOW_KIND: AggregateKind[workflow_domain.Workflow, Command, Event] = AggregateKind(
    aggregate=WORKFLOW,
    encode=encode_event,
    decide=workflow_domain.decide,
    not_found=WorkflowNotFound,
    with_id=_workflow_with_id,
    on_append=_log_transitions,
)

TASK_KIND: AggregateKind[task_domain.Task, task_domain.TaskCommand, task_domain.TaskEvent] = (
    AggregateKind(
        aggregate=TASK,
        encode=task_domain.encode_task_event,
        decide=task_domain.decide_task,
        not_found=TaskNotFound,
        with_id=_task_with_id,
    )
)

WorkflowService = AggregateService[workflow_domain.Workflow, Command, Event]
TaskService = AggregateService[task_domain.Task, task_domain.TaskCommand, task_domain.TaskEvent]
