"""Rebuild the read models from position 0, and check the live ones against a rebuild.

A rebuild fills fresh tables beside the live ones, then swaps them in one write transaction:
the swap takes the database's write lock, so no event can be appended between the last event
the rebuild applied and the swap; readers see the old tables or the new, never a mix. A running
server's projector notices the swap at its next save (the checkpoint moved) and reloads.
Rebuilding only reads the log: it never appends an event and never runs a task.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import aiosqlite

from orchestrator.eventstore.sqlite import SQLiteEventStore
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
    await projector.start(follow=False)
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
    """Rebuild into scratch tables and compare them, row by row, with the live read models."""
    live = SQLiteProjectionStorage(store, prefix=LIVE)
    await live.open()
    checkpoint = await live.load_checkpoint()
    progress = Progress(checkpoint, write)
    scratch, projector = await _build(store, "check_", progress, until=checkpoint)
    try:
        for _ in range(_SWAP_ATTEMPTS):
            # Compare inside one write transaction: nothing moves while rows are compared.
            found = await store.write_transaction(lambda conn: _compare(conn, projector.position))
            if found is not None:
                progress(projector.position, force=True)
                return progress, found
            await projector.catch_up(until=await live.load_checkpoint(), on_batch=progress)
        raise RuntimeError("the live read models kept moving; could not compare them")
    finally:
        await store.write_transaction(lambda conn: drop_tables(conn, "check_"))
        await scratch.close()
        await live.close()


async def _compare(conn: aiosqlite.Connection, rebuilt_to: int) -> list[Difference] | None:
    rows = await conn.execute_fetchall(
        f"SELECT position FROM {LIVE}checkpoints WHERE name = 'read_models'"
    )
    live_at = int(next(iter(rows))[0]) if rows else 0
    if live_at != rebuilt_to:
        return None
    # The position a row was saved at is left out: it depends on batch boundaries, not content.
    columns = ("status", "parent_id", "deleted", "needs_engine", "state")
    differs = " OR ".join(f"a.{c} IS NOT b.{c}" for c in columns)
    differences: list[Difference] = []
    for left, right, live_side in ((LIVE, "check_", True), ("check_", LIVE, False)):
        found = await conn.execute_fetchall(
            f"SELECT a.kind, a.id, a.status || ' ' || a.state, "
            f"b.status || ' ' || b.state FROM {left}rows a LEFT JOIN {right}rows b "
            f"ON a.kind = b.kind AND a.id = b.id WHERE b.id IS NULL OR {differs}"
        )
        for kind, key, mine, theirs in found:
            if not live_side and theirs is not None:
                continue  # a changed row was reported from the live side already
            differences.append(
                Difference(
                    "rows",
                    f"{kind} {key}",
                    mine if live_side else theirs,
                    theirs if live_side else mine,
                )
            )
    counters = await conn.execute_fetchall(
        f"SELECT l.name, l.count, c.count FROM {LIVE}counters l LEFT JOIN check_counters c "
        "ON l.name = c.name WHERE l.count != COALESCE(c.count, 0) "
        f"UNION ALL SELECT c.name, NULL, c.count FROM check_counters c WHERE c.count != 0 "
        f"AND c.name NOT IN (SELECT name FROM {LIVE}counters)"
    )
    for name, live_count, rebuilt_count in counters:
        differences.append(Difference("counters", str(name), str(live_count), str(rebuilt_count)))
    return differences
