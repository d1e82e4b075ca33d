"""The read-model tables of a SQLite log, for rebuild and `--check` (see `tables.py`).

Every write goes through the event store's single writer, in one transaction: a swap holds the
database's write lock, so no event can be appended between the last event a rebuild applied and
the swap, and readers see the old tables or the new, never a mix.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.eventstore.sqlite_schema import connect
from orchestrator.part_processes import FoldJob, FoldResult, PartFailed, process_count, run_parts
from orchestrator.projections.packed_states import StateCodec
from orchestrator.projections.sqlite import (
    CHECKPOINT,
    GENERATION,
    INDEXES,
    TABLES,
    SQLiteProjectionStorage,
    add_counts_sql,
    add_dictionaries_sql,
    drop_tables,
    put_rows_sql,
    schema_statements,
    set_position_sql,
)
from orchestrator.projections.tables import LIVE, StoredRow

_ROW_COLUMNS = "kind, id, status, parent_id, deleted, needs_engine, state"
#: The prefix of the read-model tables in a part's scratch file (cli_parts.py).
PART_PREFIX = "part_"


class SQLiteTablesSnapshot:
    """One set of tables read in one read transaction (a WAL snapshot)."""

    def __init__(
        self, conn: aiosqlite.Connection, prefix: str, checkpoint: int, states: StateCodec
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
        """Every row in (kind, id) order, a page at a time."""
        sql = f"SELECT {_ROW_COLUMNS} FROM {self._prefix}rows ORDER BY kind, id"
        async with self._conn.execute(sql) as cursor:
            while page := await cursor.fetchmany(1000):
                for *columns, state in page:
                    # Packed or not, a state compares as its JSON (packed_states.py).
                    yield StoredRow.of((*columns, self._states.unpack(state).decode()))

    async def counters(self) -> dict[str, int]:
        """Counters by name."""
        found = await self._conn.execute_fetchall(f"SELECT name, count FROM {self._prefix}counters")
        return {str(name): int(count) for name, count in found}


class SQLiteReadModelTables:
    """Read-model tables in the log's own SQLite file."""

    def __init__(self, store: SQLiteEventStore) -> None:
        self._store = store

    def storage(self, prefix: str = LIVE) -> SQLiteProjectionStorage:
        """Projection storage over the tables under `prefix`."""
        return SQLiteProjectionStorage(self._store, prefix=prefix)

    async def prefill(
        self,
        prefix: str,
        until: int,
        processes: int | None,
        progress: Callable[[int], None] | None,
    ) -> int:
        """Fill the new tables under `prefix` with the read models of the events up to `until`,
        folded by several processes at once (cli_parts.py), each into a scratch file of its
        own beside the log (removed after); their checkpoint `until`. The position they are
        filled to: 0, leaving them empty, when one process is the quicker (a small log, one
        core, `processes` 1)."""
        count = process_count(until, processes)
        if count <= 1:
            return 0
        log = Path(self._store.path)
        for stale in log.parent.glob(f".{log.name}.rebuild-*"):
            # A rebuild's scratch files left by a process killed mid-way: the rebuild tables
            # they were for are dropped, as this rebuild begins with dropping them.
            shutil.rmtree(stale, ignore_errors=True)
        folder = Path(tempfile.mkdtemp(prefix=f".{log.name}.rebuild-", dir=log.parent))
        try:
            jobs = [
                FoldJob(str(log), str(folder / f"part-{part}.db"), part, count, until)
                for part in range(count)
            ]
            try:
                await run_parts(jobs, FoldResult, progress, f"rebuild of {log}")
            except PartFailed as exc:
                raise StoreUnavailable(str(exc)) from None
            for job in jobs:
                await self._add_part(job.scratch, prefix)
            # The checkpoint last: only now do the tables hold every part.
            await self._store.write_transaction_now(
                lambda conn: conn.execute(set_position_sql(prefix), (CHECKPOINT, until)),
                durable=False,
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return until

    async def _add_part(self, scratch: str, prefix: str) -> None:
        """Add a part's dictionaries, rows and counters (its scratch file, cli_parts.py) to the
        tables under `prefix`, in transactions of at most _MERGED_ROWS rows: a server on the
        same file waits for each (up to its busy timeout). Not durable, as every write of a
        rebuild's tables: nothing reads them before the swap, a durable commit."""
        with contextlib.closing(sqlite3.connect(scratch, check_same_thread=False)) as part:
            # Read in the writer's thread, one page each transaction; never at once in two.
            reads = (
                (
                    f"SELECT id, kind, dictionary FROM {PART_PREFIX}dictionaries",
                    add_dictionaries_sql,
                ),
                (_PART_ROWS, put_rows_sql),
                (f"SELECT name, count FROM {PART_PREFIX}counters", add_counts_sql),
            )
            for select, insert in reads:
                cursor = part.execute(select)

                def copy(
                    conn: sqlite3.Connection,
                    cursor: sqlite3.Cursor = cursor,
                    statement: str = insert(prefix),
                ) -> bool:
                    page = cursor.fetchmany(_MERGED_ROWS)
                    conn.executemany(statement, page)
                    return len(page) == _MERGED_ROWS

                while await self._store.write_transaction_now(copy, durable=False):
                    pass

    async def drop(self, prefix: str) -> None:
        """Drop the tables under `prefix`."""
        await self._store.write_transaction(lambda conn: drop_tables(conn, prefix))

    async def swap_in(self, prefix: str, rebuilt_to: int) -> bool:
        """Rename the tables under `prefix` to the live ones, in the writer's transaction."""

        async def swap(conn: aiosqlite.Connection) -> bool:
            rows = await conn.execute_fetchall("SELECT COALESCE(MAX(position), 0) FROM events")
            if int(next(iter(rows))[0]) != rebuilt_to:
                return False
            for statement in schema_statements(LIVE):  # a new database may have none yet
                await conn.execute(statement)
            found = await conn.execute_fetchall(
                f"SELECT position FROM {LIVE}checkpoints WHERE name = ?", (GENERATION,)
            )
            generation = int(next(iter(found))[0]) + 1 if found else 1
            await drop_tables(conn, LIVE)
            for name in INDEXES:
                await conn.execute(f"DROP INDEX IF EXISTS {prefix}{name}")
            for name in TABLES:
                await conn.execute(f"ALTER TABLE {prefix}{name} RENAME TO {LIVE}{name}")
            for statement in schema_statements(LIVE):
                await conn.execute(statement)
            # A new generation tells running projectors the tables changed under them, even
            # when the rebuild ended at the very position they were at.
            await conn.execute(
                f"INSERT INTO {LIVE}checkpoints (name, position) VALUES (?, ?)",
                (GENERATION, generation),
            )
            return True

        return await self._store.write_transaction(swap)

    @asynccontextmanager
    async def snapshot(self, prefix: str) -> AsyncIterator[SQLiteTablesSnapshot]:
        """The tables under `prefix` in a read transaction of a connection of their own."""
        conn = await connect(self._store.path, 10_000)
        try:
            await conn.execute("BEGIN")
            found = await conn.execute_fetchall(
                f"SELECT position FROM {prefix}checkpoints WHERE name = ?", (CHECKPOINT,)
            )
            states = StateCodec()
            states.learn(
                await conn.execute_fetchall(
                    f"SELECT id, kind, dictionary FROM {prefix}dictionaries"
                )
            )
            checkpoint = int(next(iter(found))[0]) if found else 0
            yield SQLiteTablesSnapshot(conn, prefix, checkpoint, states)
        finally:
            await conn.close()


#: Rows a transaction of a rebuild's merge adds at most.
_MERGED_ROWS = 5000
_PART_ROWS = (
    "SELECT kind, id, status, parent_id, deleted, needs_engine, position, name, state "
    f"FROM {PART_PREFIX}rows"
)
