"""The projector: follows the log from its checkpoint and keeps the read models up to date.

It applies events in batches (one storage transaction per batch), keeps recently read aggregates
in an in-process cache so single reads do not touch the database, and keeps counts by status as
counters, so stats cost the same for a hundred or a million workflows.

Where several processes share the log (`leadership`, see leadership.py), only the process that
holds the writer's claim applies; the others follow its checkpoint: they drop from their caches
what changed and reload the counters, and answer reads from the shared tables.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec

from orchestrator.domain.tasks import Task
from orchestrator.domain.workflow import Workflow
from orchestrator.eventstore.base import Folding, RecordedEvent
from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.projections.leadership import Leadership
from orchestrator.projections.models import TASKS, WORKFLOWS, ReadModel, Row, read_model_of
from orchestrator.projections.storage import ListQuery, ProjectionMoved, ProjectionStorage
from orchestrator.sized_cache import SizedCache, charge
from orchestrator.stopping import stop_tasks

log = logging.getLogger(__name__)

_BATCH = 2000
#: What the read cache may hold, as charged by `charge` (about 15,000 typical workflows).
CACHE_BYTES = 64 * 1024 * 1024


class EventSource(Protocol):
    """What the projector reads of the log: an EventStore, or one part of a log
    (cli_parts.py)."""

    async def read_for_folding(self, after: int, limit: int) -> Sequence[Folding]:
        """The next events after position `after`, at most `limit`, as folding needs them."""

    async def read_stream(self, stream_id: str) -> Sequence[RecordedEvent]:
        """A stream's events in version order."""

    async def wait_for_events(self, after: int, timeout: float) -> bool:
        """Wait until an event past `after` is committed, or `timeout` seconds; True if one is."""


class Projector:
    """Applies the log to the read models and answers reads from them."""

    def __init__(
        self,
        store: EventSource,
        storage: ProjectionStorage,
        *,
        cache_size: int = 100_000,
        cache_bytes: int = CACHE_BYTES,
        leadership: Leadership | None = None,
    ) -> None:
        self._store = store
        self._storage = storage
        self._leadership = leadership
        # Charged each row's stored size: big configs cannot fill memory however many there are.
        self._cache: SizedCache[tuple[str, int], Any] = SizedCache(cache_size, cache_bytes)
        self._counters: dict[str, int] = {}
        self.position = 0
        self._generation = 0
        #: Readers waiting for a position (a heap: position, arrival, future), woken by
        #: `_wake` once the read models include it.
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        #: Waiters in the heap that gave up (timed out or cancelled), dropped in bulk.
        self._given_up = 0
        self._task: asyncio.Task[None] | None = None
        self._apply_lock = asyncio.Lock()
        #: Told every batch of events the read models now include (applied here, or by the
        #: writer this process follows), as folding reads them (no metadata, time or hash): the
        #: engine hears of other processes' cancels so.
        self.observers: list[Callable[[Sequence[Folding]], None]] = []

    async def start(self, *, follow: bool = True, until: int | None = None) -> None:
        """Load the checkpoint and counters, catch up with the log (up to position `until`),
        then follow it."""
        await self._reload()
        if self.writing or await self._try_lead():
            await self.catch_up(until=until)
        if follow:
            self._task = asyncio.create_task(self._follow(), name="projector")

    @property
    def writing(self) -> bool:
        """True if this process applies the log to the read models (always, unless shared)."""
        return self._leadership is None or self._leadership.leading

    async def _try_lead(self) -> bool:
        if self._leadership is None:
            return True
        if await self._leadership.try_lead():
            log.info("this process writes the read models now")
            return True
        return False

    async def stop(self, *, drain_seconds: float = 0.0) -> None:
        """Stop following the log, first applying what is committed, for up to `drain_seconds`.

        Draining at a graceful stop means the next start has no lag to make up: a restart then
        serves reads at once, and `rebuild-projections --check` compares equals.
        """
        if self._task is not None and drain_seconds > 0 and self.writing:
            try:
                async with asyncio.timeout(drain_seconds):
                    await self.catch_up()
            except TimeoutError:
                log.warning(
                    "stopped the read models at position %d: catching up took over %g s",
                    self.position,
                    drain_seconds,
                )
            except Exception:  # stopping must go on; the next start catches up instead
                log.exception("could not catch the read models up before stopping")
        task, self._task = self._task, None
        await stop_tasks(task)
        if self._leadership is not None:
            await self._leadership.close()

    async def _reload(self) -> None:
        self._cache.clear()
        self._generation = await self._storage.load_generation()
        self.position = await self._storage.load_checkpoint()
        self._counters = await self._storage.load_counters()

    async def catch_up(
        self, until: int | None = None, on_batch: Callable[[int], None] | None = None
    ) -> None:
        """Apply every committed event past the checkpoint (up to position `until`).

        The next batch is read while this one is applied: the store reads in its own thread
        (or server), so a long catch-up (a start, a rebuild) overlaps the two instead of
        waiting for each read in turn.
        """
        async with self._apply_lock:
            ahead = asyncio.ensure_future(self._read_batch(self.position, until))
            try:
                while events := await ahead:
                    ahead = asyncio.ensure_future(self._read_batch(events[-1].position, until))
                    await self._apply(events)
                    if self.position != events[-1].position:  # reloaded (a rebuild swapped in)
                        ahead.cancel()
                        ahead = asyncio.ensure_future(self._read_batch(self.position, until))
                    if on_batch is not None:
                        on_batch(self.position)
            finally:
                ahead.cancel()

    async def _read_batch(self, after: int, until: int | None) -> Sequence[Folding]:
        """The next events after `after`, at most a batch, none past `until`: only what folding
        needs of them (no metadata, time or hash decoded)."""
        limit = _BATCH if until is None else min(_BATCH, until - after)
        if limit <= 0:
            return []
        return await self._store.read_for_folding(after, limit)

    async def _follow(self) -> None:
        while True:
            try:
                if not self.writing:
                    if await self._try_lead():
                        async with self._apply_lock:
                            await self._reload()  # what the last writer stored is the base
                        self._wake()
                    else:
                        await self._follow_writer()
                    continue
                if await self._apply_next_batch():
                    continue
                if not await self._store.wait_for_events(self.position, timeout=1.0):
                    await self._notice_rebuild()
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:
                # The machine (full disk, file gone), not a bug: no traceback, as this repeats
                # every second until it is fixed; /health says so too.
                log.warning(
                    "projector cannot apply events after position %d: %s", self.position, exc
                )
                await asyncio.sleep(1.0)
            except Exception:  # keep following: a database hiccup must not stop the read models
                log.exception("projector failed to apply events after position %d", self.position)
                await asyncio.sleep(0.5)

    async def _follow_writer(self) -> None:
        """Wait (a second at most) for the writer's checkpoint to move, then catch up with it."""
        assert self._leadership is not None
        checkpoint = await self._leadership.wait_for_checkpoint(self.position, timeout=1.0)
        if checkpoint <= self.position:
            await self._notice_rebuild()
            return
        async with self._apply_lock:
            after = self.position
            while after < checkpoint:
                events = await self._read_batch(after, checkpoint)
                if not events:
                    break
                for recorded in events:
                    found = read_model_of(recorded.stream_id)
                    if found is not None:
                        self._cache.discard((found[0].kind, found[1]))
                after = events[-1].position
                self._tell(events)
            self._counters = await self._storage.load_counters()
            self.position = max(self.position, checkpoint)
        self._wake()

    async def _notice_rebuild(self) -> None:
        # Idle: a rebuild may have swapped the tables in at the very position we are at, which
        # the next save would not notice. One small read a second keeps reads from going stale.
        async with self._apply_lock:
            if await self._storage.load_generation() != self._generation:
                log.warning("the read models were rebuilt; reloading them")
                await self._reload()
                self._wake()

    async def _apply_next_batch(self, until: int | None = None) -> bool:
        async with self._apply_lock:
            events = await self._read_batch(self.position, until)
            if not events:
                return False
            await self._apply(events)
            return True

    async def _apply(self, events: Sequence[Folding]) -> None:
        grouped: dict[tuple[ReadModel, int], list[Folding]] = {}
        for recorded in events:
            found = read_model_of(recorded.stream_id)
            if found is not None:
                grouped.setdefault(found, []).append(recorded)
        stored = await self._load_missing(list(grouped))
        rows: list[Row] = []
        deltas: dict[str, int] = {}
        changed: list[tuple[tuple[str, int], Any, int]] = []
        for (model, aggregate_id), stream_events in grouped.items():
            key = (model.kind, aggregate_id)
            before = self._cache.get(key) or stored.get(key)
            after = _fold_onto(model, before, stream_events)
            if after is None or after is before:
                continue
            rows.append(model.row(aggregate_id, after))
            changed.append((key, after, charge(rows[-1].state)))
            _count(deltas, model, before, -1)
            _count(deltas, model, after, +1)
        last = events[-1].position
        try:
            await self._storage.save(rows, deltas, last, self.position, self._generation)
        except ProjectionMoved as moved:
            # The tables were swapped by a rebuild (or written by another projector): start
            # again from what is stored instead of adding this batch on top a second time.
            log.warning("%s; reloading the read models", moved)
            await self._reload()
            self._wake()
            return
        for key, state, size in changed:
            self._remember(key, state, size)
        for name, delta in deltas.items():
            self._counters[name] = self._counters.get(name, 0) + delta
        self.position = last
        self._wake()
        self._tell(events)

    def _tell(self, events: Sequence[Folding]) -> None:
        for observe in self.observers:
            try:
                observe(events)
            except Exception:  # an observer's bug must not stop the read models
                log.exception("an observer of the applied events failed")

    def _forget_given_up(self) -> None:
        """Count a waiter that timed out or was cancelled; once they are half the heap, drop
        them all in one pass. A projector stuck for hours must not keep every abandoned waiter,
        and removing each one from the heap as it gives up would cost a pass of its own (a
        backlog of thousands timing out together would stall the loop for seconds)."""
        self._given_up += 1
        if self._given_up * 2 > len(self._waiters):
            self._waiters = [entry for entry in self._waiters if not entry[2].done()]
            heapq.heapify(self._waiters)
            self._given_up = 0

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters and waiters[0][0] <= self.position:
            waiter = heapq.heappop(waiters)[2]
            if not waiter.done():
                waiter.set_result(None)
            elif self._given_up:
                self._given_up -= 1  # one that gave up, gone with the others woken here

    async def _load_missing(self, keys: list[tuple[ReadModel, int]]) -> dict[tuple[str, int], Any]:
        loaded: dict[tuple[str, int], Any] = {}
        by_model: dict[ReadModel, list[int]] = {}
        for model, aggregate_id in keys:
            if (model.kind, aggregate_id) not in self._cache:
                by_model.setdefault(model, []).append(aggregate_id)
        for model, ids in by_model.items():
            for aggregate_id, data in (await self._storage.load_rows(model.kind, ids)).items():
                try:
                    state = model.decode_state(data)
                except (msgspec.DecodeError, ValueError):
                    # One unreadable row must not stop every read model: fold that aggregate
                    # again from its stream, as far as the checkpoint, and carry on.
                    log.error(
                        "unreadable %s row %d; folding it from its stream", model.kind, aggregate_id
                    )
                    state = await self._fold_stream(model, aggregate_id)
                loaded[(model.kind, aggregate_id)] = state
        return loaded

    async def _fold_stream(self, model: ReadModel, aggregate_id: int) -> Any:
        recorded = await self._store.read_stream(model.aggregate.stream_id(aggregate_id))
        return _fold_onto(model, None, [e for e in recorded if e.position <= self.position])

    def _remember(self, key: tuple[str, int], state: Any, size: int) -> None:
        self._cache.put(key, state, size)

    async def wait_for(self, position: int, timeout: float = 10.0) -> None:
        """Return once the read models include `position` (a client then sees its own write).

        Each waiter is a future in a heap by position, woken once by the batch that reaches
        it: no wake-up of every waiter at every batch, no timeout scope per wait.
        """
        if self.position >= position:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        entry = (position, next(self._arrivals), waiter)
        heapq.heappush(self._waiters, entry)
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        except TimeoutError:
            raise TimeoutError(f"read models did not reach position {position} in time") from None
        finally:
            timer.cancel()
            if not waiter.done() or waiter.cancelled() or waiter.exception() is not None:
                waiter.cancel()
                self._forget_given_up()

    async def get(self, model: ReadModel, aggregate_id: int) -> Any | None:
        """The aggregate's read model, deleted ones included; None if it never existed."""
        key = (model.kind, aggregate_id)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        seen = (self.position, self._generation)
        data = (await self._storage.load_rows(model.kind, [aggregate_id])).get(aggregate_id)
        if data is None:
            return None
        state = model.decode_state(data)
        # Remember it only if nothing was applied meanwhile: a row read before a batch (or a
        # rebuild) landed would otherwise sit in the cache behind the log for good.
        if key not in self._cache and (self.position, self._generation) == seen:
            self._remember(key, state, charge(data))
        return self._cache.get(key, state)

    async def workflow(self, workflow_id: int) -> Workflow | None:
        """One workflow's read model (deleted ones included)."""
        found: Workflow | None = await self.get(WORKFLOWS, workflow_id)
        return found

    async def task(self, task_id: int) -> Task | None:
        """One standalone task's read model (deleted ones included)."""
        found: Task | None = await self.get(TASKS, task_id)
        return found

    async def list_page(self, model: ReadModel, query: ListQuery) -> list[Any]:
        """Non-deleted aggregates matching `query`, in id order."""
        return [model.decode_state(data) for data in await self._storage.list_rows(query)]

    def counts(self, model: ReadModel) -> dict[str, int]:
        """Non-deleted aggregates by status."""
        return {s: self._counters.get(f"{model.kind}:{s}", 0) for s in model.statuses}

    def stats(self) -> dict[str, int]:
        """Workflow counts by state name (deleted workflows excluded)."""
        return self.counts(WORKFLOWS)

    async def ids_needing_engine(self, model: ReadModel) -> list[int]:
        """Aggregates the engine must resume, as of the applied position."""
        return await self._storage.ids_needing_engine(model.kind)

    async def max_id(self, model: ReadModel) -> int:
        """The highest id of this kind ever projected."""
        return await self._storage.max_id(model.kind)


def _fold_onto(model: ReadModel, state: Any, events: Sequence[Folding]) -> Any:
    aggregate = model.aggregate
    # Looked up once, not for each event: a rebuild folds the whole log through here.
    decode, evolve = aggregate.decode, aggregate.evolve
    version = 0 if state is None else state.version
    for recorded in events:
        if recorded.version <= version:
            continue  # applied already (a row saved ahead of an older checkpoint)
        if recorded.version != version + 1:
            log.error(
                "%s skips from version %d to %d", recorded.stream_id, version, recorded.version
            )
            break
        try:
            event = decode(recorded.data, recorded.schema_version)
        except Exception:  # a payload the code cannot read: stop this stream, keep the others
            log.exception("cannot decode event at position %d", recorded.position)
            break
        if state is None and not isinstance(event, aggregate.first_events):
            log.error("%s does not begin with its creation event", recorded.stream_id)
            break
        state = evolve(state, event)
        version = state.version
    return state


def _count(deltas: dict[str, int], model: ReadModel, state: Any, sign: int) -> None:
    if state is not None and not state.deleted:
        name = f"{model.kind}:{model.status(state)}"
        deltas[name] = deltas.get(name, 0) + sign


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
