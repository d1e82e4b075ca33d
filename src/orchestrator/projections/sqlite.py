"""Read models in the same SQLite file as the log.

Reads use a connection of their own; writes go through the event store's single writer (see
`SQLiteEventStore.write_transaction`), so the log and the read models never wait on each other's
locks. Table names carry a prefix so that a rebuild can fill fresh tables beside the live ones.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Mapping, Sequence

import aiosqlite

from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.eventstore.sqlite_schema import connect
from orchestrator.projections.models import Row
from orchestrator.projections.storage import ListQuery, ProjectionMoved
from orchestrator.projections.tables import CHECKPOINT as CHECKPOINT
from orchestrator.projections.tables import FORMAT as FORMAT
from orchestrator.projections.tables import GENERATION as GENERATION
from orchestrator.projections.tables import READ_MODEL_FORMAT as READ_MODEL_FORMAT

TABLES = ("rows", "counters", "checkpoints")
INDEXES = ("rows_by_status", "rows_by_parent", "rows_needing_engine")

log = logging.getLogger(__name__)


async def drop_tables(conn: aiosqlite.Connection, prefix: str) -> None:
    """Drop the read-model tables and indexes under `prefix`."""
    for name in INDEXES:
        await conn.execute(f"DROP INDEX IF EXISTS {prefix}{name}")
    for name in TABLES:
        await conn.execute(f"DROP TABLE IF EXISTS {prefix}{name}")


def schema_statements(prefix: str) -> tuple[str, ...]:
    """The CREATE statements of the read-model tables and indexes under `prefix`."""
    return (
        f"""CREATE TABLE IF NOT EXISTS {prefix}rows (
            kind         TEXT    NOT NULL,
            id           INTEGER NOT NULL,
            status       TEXT    NOT NULL,
            parent_id    INTEGER,
            deleted      INTEGER NOT NULL,
            needs_engine INTEGER NOT NULL,
            position     INTEGER NOT NULL,
            state        TEXT    NOT NULL,
            PRIMARY KEY (kind, id)
        ) WITHOUT ROWID""",
        f"""CREATE INDEX IF NOT EXISTS {prefix}rows_by_status
            ON {prefix}rows (kind, deleted, status, id)""",
        f"""CREATE INDEX IF NOT EXISTS {prefix}rows_by_parent
            ON {prefix}rows (kind, parent_id, id) WHERE parent_id IS NOT NULL""",
        f"""CREATE INDEX IF NOT EXISTS {prefix}rows_needing_engine
            ON {prefix}rows (kind, id) WHERE needs_engine = 1""",
        f"""CREATE TABLE IF NOT EXISTS {prefix}counters (
            name  TEXT PRIMARY KEY,
            count INTEGER NOT NULL
        )""",
        f"""CREATE TABLE IF NOT EXISTS {prefix}checkpoints (
            name     TEXT PRIMARY KEY,
            position INTEGER NOT NULL
        )""",
    )


class SQLiteProjectionStorage:
    """Read-model rows, counters and the checkpoint, written in one transaction."""

    def __init__(
        self, store: SQLiteEventStore, *, prefix: str = "projection_", busy_timeout_ms: int = 10_000
    ) -> None:
        if not prefix.replace("_", "").isalnum():
            raise ValueError(f"a table prefix is letters, digits and _, not {prefix!r}")
        self.path = store.path
        self.prefix = prefix
        self._store = store
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Connect for reads and create the tables if they are missing (the store must be open)."""
        self._conn = await connect(self.path, self._busy_timeout_ms)

        prefix = self.prefix

        async def create(conn: aiosqlite.Connection) -> None:
            for statement in schema_statements(prefix):
                await conn.execute(statement)
            rows = await conn.execute_fetchall(f"SELECT name, position FROM {prefix}checkpoints")
            found = {str(name): int(at) for name, at in rows}
            # Tables that hold rows but no format row were written before formats were kept.
            stored = found.get(FORMAT, 1 if found else READ_MODEL_FORMAT)
            if stored != READ_MODEL_FORMAT:
                log.warning(
                    "the read models in %s are of format %d, not %d; rebuilding them from the log",
                    self.path,
                    stored,
                    READ_MODEL_FORMAT,
                )
                await drop_tables(conn, prefix)
                for statement in schema_statements(prefix):
                    await conn.execute(statement)
            await conn.execute(
                f"INSERT INTO {prefix}checkpoints (name, position) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (FORMAT, READ_MODEL_FORMAT),
            )

        await self._store.write_transaction(create)

    async def close(self) -> None:
        """Close the read connection."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _fetch(self, sql: str, params: Iterable[object] = ()) -> list[sqlite3.Row]:
        if self._conn is None:
            raise StoreUnavailable("the SQLite projection storage is not open")
        try:
            return list(await self._conn.execute_fetchall(sql, tuple(params)))
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"projection read from {self.path} failed: {exc}") from exc

    async def load_checkpoint(self) -> int:
        """The last applied position."""
        rows = await self._fetch(
            f"SELECT position FROM {self.prefix}checkpoints WHERE name = ?", (CHECKPOINT,)
        )
        return int(rows[0][0]) if rows else 0

    async def load_generation(self) -> int:
        """How many times a rebuild swapped these tables in."""
        rows = await self._fetch(
            f"SELECT position FROM {self.prefix}checkpoints WHERE name = ?", (GENERATION,)
        )
        return int(rows[0][0]) if rows else 0

    async def load_counters(self) -> dict[str, int]:
        """Counters by name."""
        rows = await self._fetch(f"SELECT name, count FROM {self.prefix}counters")
        return {name: int(count) for name, count in rows}

    async def load_rows(self, kind: str, ids: Iterable[int]) -> dict[int, bytes]:
        """Stored states for these ids."""
        wanted = list(ids)
        found: dict[int, bytes] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self._fetch(
                f"SELECT id, state FROM {self.prefix}rows WHERE kind = ? AND id IN ({marks})",
                [kind, *chunk],
            )
            found.update((int(i), state.encode()) for i, state in rows)
        return found

    async def save(
        self,
        rows: Sequence[Row],
        counter_deltas: Mapping[str, int],
        position: int,
        expected_checkpoint: int,
        expected_generation: int = 0,
    ) -> None:
        """Rows, counter deltas and checkpoint in one transaction."""
        values = [
            (
                row.kind,
                row.id,
                row.status,
                row.parent_id,
                int(row.deleted),
                int(row.needs_engine),
                position,
                row.state.decode(),
            )
            for row in rows
        ]
        deltas = [(name, delta) for name, delta in counter_deltas.items() if delta]
        prefix = self.prefix

        async def write(conn: aiosqlite.Connection) -> None:
            rows = await conn.execute_fetchall(f"SELECT name, position FROM {prefix}checkpoints")
            found = {str(name): int(at) for name, at in rows}
            stored = int(found.get(CHECKPOINT, 0))
            generation = int(found.get(GENERATION, 0))
            if stored != expected_checkpoint or generation != expected_generation:
                raise ProjectionMoved(expected_checkpoint, stored)
            if values:
                await conn.executemany(
                    f"INSERT OR REPLACE INTO {prefix}rows (kind, id, status, parent_id, deleted, "
                    "needs_engine, position, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
            if deltas:
                await conn.executemany(
                    f"INSERT INTO {prefix}counters (name, count) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET count = count + excluded.count",
                    deltas,
                )
            await conn.execute(
                f"INSERT INTO {prefix}checkpoints (name, position) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (CHECKPOINT, position),
            )

        await self._store.write_transaction(write)

    async def list_rows(self, query: ListQuery) -> list[bytes]:
        """Matching non-deleted rows in id order, one page."""
        where = ["kind = ?", "deleted = 0"]
        params: list[object] = [query.kind]
        if query.status is not None:
            where.append("status = ?")
            params.append(query.status)
        if query.parent_id is not None:
            where.append("parent_id = ?")
            params.append(query.parent_id)
        params += [query.limit, query.skip]
        rows = await self._fetch(
            f"SELECT state FROM {self.prefix}rows WHERE {' AND '.join(where)} "
            "ORDER BY id LIMIT ? OFFSET ?",
            params,
        )
        return [row[0].encode() for row in rows]

    async def ids_needing_engine(self, kind: str) -> list[int]:
        """Ids the engine must resume."""
        rows = await self._fetch(
            f"SELECT id FROM {self.prefix}rows WHERE kind = ? AND needs_engine = 1 ORDER BY id",
            (kind,),
        )
        return [int(row[0]) for row in rows]

    async def max_id(self, kind: str) -> int:
        """Highest id of this kind seen."""
        rows = await self._fetch(
            f"SELECT COALESCE(MAX(id), 0) FROM {self.prefix}rows WHERE kind = ?", (kind,)
        )
        return int(rows[0][0])
