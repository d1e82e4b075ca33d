"""Rebuild the read models from position 0, and check the live ones against a rebuild.

A rebuild fills fresh tables beside the live ones, then swaps them in one write transaction:
the swap takes the database's write lock, so no event can be appended between the last event
the rebuild applied and the swap; readers see the old tables or the new, never a mix. A running
server's projector notices the swap at its next save (the checkpoint moved) and reloads.
Rebuilding only reads the log: it never appends an event and never runs a task.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.eventstore.sqlite_schema import connect
from orchestrator.projections.projector import Projector
from orchestrator.projections.sqlite import (
    GENERATION,
    INDEXES,
    TABLES,
    SQLiteProjectionStorage,
    drop_tables,
    schema_statements,
)

LIVE = "projection_"
_SWAP_ATTEMPTS = 50


class Progress:
    """Prints events done, events/s and the time left, at most once a second."""

    def __init__(self, total: int, write: Callable[[str], None]) -> None:
        self.total = total
        self.write = write
        self.began = time.monotonic()
        self._last = 0.0
        self.done = 0

    def __call__(self, position: int, *, force: bool = False) -> None:
        """Report that the rebuild reached `position`."""
        self.done = position
        now = time.monotonic()
        if not force and now - self._last < 1.0:
            return
        self._last = now
        elapsed = max(now - self.began, 1e-9)
        rate = position / elapsed
        left = (self.total - position) / rate if rate and self.total > position else 0.0
        self.write(f"{position}/{self.total} events, {rate:,.0f} events/s, ETA {left:.1f} s")

    @property
    def rate(self) -> float:
        """Events per second so far."""
        return self.done / max(time.monotonic() - self.began, 1e-9)


@dataclass
class Difference:
    """One row that differs between the live read models and a rebuild."""

    table: str
    key: str
    live: str | None
    rebuilt: str | None


async def _build(
    store: SQLiteEventStore, prefix: str, progress: Progress, until: int | None = None
) -> tuple[SQLiteProjectionStorage, Projector]:
    await store.write_transaction(lambda conn: drop_tables(conn, prefix))
    scratch = SQLiteProjectionStorage(store, prefix=prefix)
    await scratch.open()
    projector = Projector(store, scratch, cache_size=10_000)
    await projector.start(follow=False, until=0)  # loads only: the batches below report progress
    await projector.catch_up(until=until, on_batch=progress)
    return scratch, projector


async def rebuild(store: SQLiteEventStore, write: Callable[[str], None]) -> Progress:
    """Rebuild every read model into fresh tables and swap them in atomically."""
    progress = Progress(await store.head_position(), write)
    scratch, projector = await _build(store, "rebuild_", progress)
    try:
        for _ in range(_SWAP_ATTEMPTS):
            await projector.catch_up(on_batch=progress)
            if await store.write_transaction(lambda conn: _swap(conn, projector.position)):
                progress(projector.position, force=True)
                return progress
        raise RuntimeError("the log kept growing; could not swap the rebuilt read models in")
    finally:
        await scratch.close()


async def _swap(conn: aiosqlite.Connection, rebuilt_to: int) -> bool:
    rows = await conn.execute_fetchall("SELECT COALESCE(MAX(position), 0) FROM events")
    if int(next(iter(rows))[0]) != rebuilt_to:
        return False  # events arrived since: catch up again, then retry
    for statement in schema_statements(LIVE):  # a new database may have none yet
        await conn.execute(statement)
    found = await conn.execute_fetchall(
        f"SELECT position FROM {LIVE}checkpoints WHERE name = ?", (GENERATION,)
    )
    generation = int(next(iter(found))[0]) + 1 if found else 1
    await drop_tables(conn, LIVE)
    for name in INDEXES:
        await conn.execute(f"DROP INDEX IF EXISTS rebuild_{name}")
    for name in TABLES:
        await conn.execute(f"ALTER TABLE rebuild_{name} RENAME TO {LIVE}{name}")
    for statement in schema_statements(LIVE):
        await conn.execute(statement)
    # A new generation tells running projectors the tables changed under them, even when the
    # rebuild ended at the very position they were at.
    await conn.execute(
        f"INSERT INTO {LIVE}checkpoints (name, position) VALUES (?, ?)", (GENERATION, generation)
    )
    return True


async def check(
    store: SQLiteEventStore, write: Callable[[str], None]
) -> tuple[Progress, list[Difference]]:
    """Rebuild into scratch tables up to the live checkpoint and compare them, row by row, with
    the live read models as they were at that checkpoint.

    The live side is read in one read transaction (a snapshot), begun before the rebuild: its
    rows, counters and checkpoint belong to one moment, however far a running server moves on
    meanwhile, and the rebuild stops at exactly that checkpoint. So read models that lag the log
    (a server stopped mid-way) or keep moving (a server under load) are compared, never chased.
    """
    live = SQLiteProjectionStorage(store, prefix=LIVE)
    await live.open()  # creates the live tables of a database that has none yet
    await live.close()
    snapshot = await connect(store.path, 10_000)
    rebuilt: aiosqlite.Connection | None = None
    try:
        await snapshot.execute("BEGIN")
        found = await snapshot.execute_fetchall(
            f"SELECT position FROM {LIVE}checkpoints WHERE name = 'read_models'"
        )
        checkpoint = int(next(iter(found))[0]) if found else 0
        progress = Progress(checkpoint, write)
        scratch, projector = await _build(store, "check_", progress, until=checkpoint)
        try:
            progress(projector.position, force=True)
            rebuilt = await connect(store.path, 10_000)
            return progress, await _compare(snapshot, rebuilt)
        finally:
            await store.write_transaction(lambda conn: drop_tables(conn, "check_"))
            await scratch.close()
    finally:
        for conn in (rebuilt, snapshot):
            if conn is not None:
                await conn.close()


_ROW_COLUMNS = "kind, id, status, parent_id, deleted, needs_engine, state"


async def _rows(conn: aiosqlite.Connection, prefix: str) -> AsyncIterator[tuple[Any, ...]]:
    async with conn.execute(f"SELECT {_ROW_COLUMNS} FROM {prefix}rows ORDER BY kind, id") as rows:
        while page := await rows.fetchmany(1000):
            for row in page:
                yield tuple(row)


def _shown(row: tuple[Any, ...] | None) -> str | None:
    return None if row is None else f"{row[2]} {row[6]}"


async def _compare(live: aiosqlite.Connection, rebuilt: aiosqlite.Connection) -> list[Difference]:
    # Both sides stream in key order and are merged, so memory stays flat however many rows.
    # The position a row was saved at is left out: it depends on batch boundaries, not content.
    differences: list[Difference] = []
    mine, theirs = _rows(live, LIVE), _rows(rebuilt, "check_")
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
        differences.append(Difference("rows", f"{only[0]} {only[1]}", left_shown, right_shown))
    live_counts = await _counters(live, LIVE)
    rebuilt_counts = await _counters(rebuilt, "check_")
    for name, count in live_counts.items():
        if count != rebuilt_counts.get(name, 0):
            other = rebuilt_counts.get(name)
            differences.append(Difference("counters", name, str(count), str(other)))
    for name, count in rebuilt_counts.items():
        if count and name not in live_counts:
            differences.append(Difference("counters", name, "None", str(count)))
    return differences


async def _counters(conn: aiosqlite.Connection, prefix: str) -> dict[str, int]:
    found = await conn.execute_fetchall(f"SELECT name, count FROM {prefix}counters")
    return {str(name): int(count) for name, count in found}
