"""The read-model tables of a PostgreSQL log, for rebuild and `--check` (see `tables.py`).

A swap is one transaction that first takes the append lock (postgres_connection.LOCK_APPENDS),
the very lock every append takes: no event can be committed, by any process, between the check
that the log's head is still where the rebuild stopped and the swap itself. Renaming tables is
transactional in PostgreSQL, so readers see the old tables or the new, never a mix.

A snapshot is a REPEATABLE READ transaction: every read in it sees the database as of its first
statement, however far a running server moves on meanwhile.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from orchestrator.eventstore.postgres_connection import PostgresDatabase
from orchestrator.projections.packed_states import StateCodec
from orchestrator.projections.postgres import (
    INDEXES,
    TABLES,
    PostgresProjectionStorage,
    check_prefix,
    create_tables,
    drop_tables,
    set_position,
)
from orchestrator.projections.tables import CHECKPOINT, GENERATION, LIVE, FoldedHere, StoredRow

_ROW_COLUMNS = "kind, id, status, parent_id, deleted, needs_engine, state, packed"


class PostgresTablesSnapshot:
    """One set of tables read in one REPEATABLE READ transaction."""

    def __init__(
        self, conn: asyncpg.Connection, prefix: str, checkpoint: int, states: StateCodec
    ) -> None:
        self._conn = conn
        self._prefix = prefix
        self._checkpoint = checkpoint
        self._states = states

    @property
    def checkpoint(self) -> int:
        """The position the tables reflected when the snapshot began."""
        return self._checkpoint

    async def rows(self) -> AsyncIterator[StoredRow]:
        """Every row in (kind, id) order, through a server-side cursor a page at a time."""
        sql = f"SELECT {_ROW_COLUMNS} FROM {self._prefix}rows ORDER BY kind, id"
        async for *columns, state, packed in self._conn.cursor(sql, prefetch=1000):
            # Packed or not, a state compares as its JSON (packed_states.py).
            stored = state if packed is None else packed
            yield StoredRow.of((*columns, self._states.unpack(stored).decode()))

    async def counters(self) -> dict[str, int]:
        """Counters by name."""
        found = await self._conn.fetch(f"SELECT name, count FROM {self._prefix}counters")
        return {str(name): int(count) for name, count in found}


class PostgresReadModelTables(FoldedHere):
    """Read-model tables in the log's own PostgreSQL schema."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    def storage(self, prefix: str = LIVE) -> PostgresProjectionStorage:
        """Projection storage over the tables under `prefix`."""
        return PostgresProjectionStorage(self._db, prefix=prefix)

    async def drop(self, prefix: str) -> None:
        """Drop the tables under `prefix`."""
        check_prefix(prefix)
        async with self._db.transaction("dropping read-model tables") as conn:
            await drop_tables(conn, prefix)

    async def swap_in(self, prefix: str, rebuilt_to: int) -> bool:
        """Rename the tables under `prefix` to the live ones, under the append lock."""
        check_prefix(prefix)
        # Statistics for the planner before the tables go live (they were filled in one go),
        # and before the append lock: an ANALYZE holds a lock the renames below would wait for.
        async with self._db.connection("analyzing the rebuilt read models") as conn:
            await conn.execute(f"ANALYZE {prefix}rows")
        async with self._db.transaction("a read-model swap", lock_appends=True) as conn:
            head = await conn.fetchval("SELECT COALESCE(MAX(position), 0) FROM events")
            if int(head) != rebuilt_to:
                return False
            # The checkpoints first, as a save takes them (SELECT ... FOR UPDATE) before the
            # rows: in the other order (CREATE INDEX IF NOT EXISTS below locks the rows table
            # even when the index is there) a save and the swap each waited for the other.
            if await conn.fetchval(f"SELECT to_regclass('{LIVE}checkpoints') IS NOT NULL"):
                await conn.execute(f"LOCK TABLE {LIVE}checkpoints IN ACCESS EXCLUSIVE MODE")
            await create_tables(conn, LIVE)  # a new database may have none yet
            generation = await conn.fetchval(
                f"SELECT position FROM {LIVE}checkpoints WHERE name = $1", GENERATION
            )
            await drop_tables(conn, LIVE)
            for name in TABLES:
                await conn.execute(f"ALTER TABLE {prefix}{name} RENAME TO {LIVE}{name}")
            for name in INDEXES:
                await conn.execute(f"ALTER INDEX {prefix}{name} RENAME TO {LIVE}{name}")
            await create_tables(conn, LIVE)
            # A new generation tells running projectors the tables changed under them, even
            # when the rebuild ended at the very position they were at.
            await set_position(conn, LIVE, GENERATION, int(generation or 0) + 1)
            return True

    @asynccontextmanager
    async def snapshot(self, prefix: str) -> AsyncIterator[PostgresTablesSnapshot]:
        """The tables under `prefix` in a read-only REPEATABLE READ transaction of their own."""
        check_prefix(prefix)
        async with (
            self._db.connection("a read-model snapshot") as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            found = await conn.fetchval(
                f"SELECT position FROM {prefix}checkpoints WHERE name = $1", CHECKPOINT
            )
            states = StateCodec()
            states.learn(await conn.fetch(f"SELECT id, kind, dictionary FROM {prefix}dictionaries"))
            yield PostgresTablesSnapshot(conn, prefix, int(found or 0), states)
