"""Rebuild the read models from position 0, and check the live ones against a rebuild.

A rebuild fills fresh tables beside the live ones, then swaps them in atomically (see
`ReadModelTables.swap_in`): no event can be appended between the last event the rebuild applied
and the swap; readers see the old tables or the new, never a mix. A running server's projector
notices the swap at its next save (the generation moved) and reloads. Rebuilding only reads the
log: it never appends an event and never runs a task. Written once for every backend: each
backend's tables own their transactions.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from orchestrator.eventstore.base import EventStore
from orchestrator.progress import Meter, Reading
from orchestrator.projections.projector import Projector
from orchestrator.projections.storage import ProjectionStorage
from orchestrator.projections.tables import LIVE, ReadModelTables, StoredRow, TablesSnapshot

_SWAP_ATTEMPTS = 50


@contextlib.contextmanager
def paused_collector() -> Iterator[None]:
    """Python's cyclic garbage collector off for a bulk pass over the log (a rebuild, a check,
    `verify`), on again after it (if it was on).

    Such a pass keeps a large heap alive (the aggregates it folds: every stream's state, for
    verify) while it allocates millions of short-lived objects, none in a reference cycle: the
    collector would walk that heap again and again and find nothing (a fifth to a quarter of the
    pass's time). Reference counting frees what the pass drops; the collector, back on,
    collects any cycle as usual.
    """
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


@dataclass
class Difference:
    """One row that differs between the live read models and a rebuild."""

    table: str
    key: str
    live: str | None
    rebuilt: str | None


async def _build(
    store: EventStore,
    tables: ReadModelTables,
    prefix: str,
    progress: Meter,
    until: int | None = None,
    processes: int | None = None,
) -> tuple[ProjectionStorage, Projector]:
    await tables.drop(prefix)
    scratch = tables.storage(prefix)
    await scratch.open()
    # Most of the log folded by several processes at once where the backend can (a large
    # SQLite log: one process folds at most about 140,000 events a second); the projector
    # then folds what is left, here.
    head = until if until is not None else await store.head_position()
    await tables.prefill(prefix, head, processes, progress)
    projector = Projector(store, scratch, cache_size=10_000)
    await projector.start(follow=False, until=0)  # loads only: the batches below report progress
    await projector.catch_up(until=until, on_batch=progress)
    return scratch, projector


async def rebuild(
    store: EventStore,
    tables: ReadModelTables,
    show: Callable[[Reading], None],
    *,
    interval: float = 1.0,
    processes: int | None = None,
) -> Meter:
    """Rebuild every read model into fresh tables and swap them in atomically; `show` gets the
    progress (events applied of the log's head). `processes`: how many fold the log (see
    ReadModelTables.prefill; None: as many as suit the log and the machine)."""
    progress = Meter("rebuild", await store.head_position(), show, interval=interval)
    with paused_collector():
        return await _rebuild(store, tables, progress, processes)


async def _rebuild(
    store: EventStore, tables: ReadModelTables, progress: Meter, processes: int | None
) -> Meter:
    scratch, projector = await _build(store, tables, "rebuild_", progress, processes=processes)
    try:
        for _ in range(_SWAP_ATTEMPTS):
            await projector.catch_up(on_batch=progress)
            if await tables.swap_in("rebuild_", projector.position):
                progress.total = max(progress.total or 0, projector.position)
                progress(projector.position)
                progress.finish()
                return progress
        raise RuntimeError("the log kept growing; could not swap the rebuilt read models in")
    finally:
        await scratch.close()


async def check(
    store: EventStore,
    tables: ReadModelTables,
    show: Callable[[Reading], None],
    *,
    interval: float = 1.0,
    processes: int | None = None,
) -> tuple[Meter, list[Difference]]:
    """Rebuild into scratch tables up to the live checkpoint and compare them, row by row, with
    the live read models as they were at that checkpoint.

    The live side is read from a snapshot taken before the rebuild: its rows, counters and
    checkpoint belong to one moment, however far a running server moves on meanwhile, and the
    rebuild stops at exactly that checkpoint. So read models that lag the log (a server stopped
    mid-way) or keep moving (a server under load) are compared, never chased.
    """
    live = tables.storage(LIVE)
    await live.open()  # creates the live tables of a database that has none yet
    await live.close()
    async with tables.snapshot(LIVE) as before:
        progress = Meter("check", before.checkpoint, show, interval=interval)
        with paused_collector():
            scratch, projector = await _build(
                store, tables, "check_", progress, until=before.checkpoint, processes=processes
            )
        try:
            progress(projector.position)
            progress.finish()
            async with tables.snapshot("check_") as rebuilt:
                return progress, await _compare(before, rebuilt)
        finally:
            await tables.drop("check_")
            await scratch.close()


def _shown(row: StoredRow | None) -> str | None:
    return None if row is None else f"{row.status} {row.state}"


async def _compare(live: TablesSnapshot, rebuilt: TablesSnapshot) -> list[Difference]:
    # Both sides stream in key order and are merged, so memory stays flat however many rows.
    differences: list[Difference] = []
    mine: AsyncIterator[StoredRow] = live.rows()
    theirs: AsyncIterator[StoredRow] = rebuilt.rows()
    left, right = await anext(mine, None), await anext(theirs, None)
    while left is not None or right is not None:
        if right is None or (left is not None and left[:2] < right[:2]):
            only, left_shown, right_shown = left, _shown(left), None
            left = await anext(mine, None)
        elif left is None or right[:2] < left[:2]:
            only, left_shown, right_shown = right, None, _shown(right)
            right = await anext(theirs, None)
        else:
            only, left_shown, right_shown = left, _shown(left), _shown(right)
            same = left[2:] == right[2:]
            left, right = await anext(mine, None), await anext(theirs, None)
            if same:
                continue
        assert only is not None
        differences.append(Difference("rows", f"{only.kind} {only.id}", left_shown, right_shown))
    live_counts = await live.counters()
    rebuilt_counts = await rebuilt.counters()
    for name, count in live_counts.items():
        if count != rebuilt_counts.get(name, 0):
            other = rebuilt_counts.get(name)
            differences.append(Difference("counters", name, str(count), str(other)))
    for name, count in rebuilt_counts.items():
        if count and name not in live_counts:
            differences.append(Difference("counters", name, "None", str(count)))
    return differences
