"""Read models in the same SQLite file as the log.

Reads use a connection of their own; writes go through the event store's single writer (see
`SQLiteEventStore.write_transaction`), so the log and the read models never wait on each other's
locks.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping

import aiosqlite
import msgspec

from orchestrator.domain.workflow import Workflow
from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.eventstore.sqlite import SQLiteEventStore, connect
from orchestrator.projections.storage import needs_engine

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS projection_workflows (
        workflow_id  INTEGER PRIMARY KEY,
        status       TEXT    NOT NULL,
        deleted      INTEGER NOT NULL,
        needs_engine INTEGER NOT NULL,
        position     INTEGER NOT NULL,
        state        TEXT    NOT NULL
    )""",
    """CREATE INDEX IF NOT EXISTS projection_workflows_needs_engine
        ON projection_workflows (needs_engine) WHERE needs_engine = 1""",
    """CREATE TABLE IF NOT EXISTS projection_stats (
        status TEXT PRIMARY KEY,
        count  INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS projection_checkpoints (
        name     TEXT PRIMARY KEY,
        position INTEGER NOT NULL
    )""",
)

_CHECKPOINT = "workflows"
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Workflow)


class SQLiteProjectionStorage:
    """Workflow rows, stats counters and the checkpoint, written in one transaction."""

    def __init__(self, store: SQLiteEventStore, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = store.path
        self._store = store
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Connect for reads and create the tables if they are missing (the store must be open)."""
        self._conn = await connect(self.path, self._busy_timeout_ms)

        async def create(conn: aiosqlite.Connection) -> None:
            for statement in _SCHEMA:
                await conn.execute(statement)

        await self._store.write_transaction(create)

    async def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreUnavailable("the SQLite projection storage is not open")
        return self._conn

    async def _fetch(self, sql: str, params: Iterable[object] = ()) -> list[sqlite3.Row]:
        try:
            return list(await self._connection().execute_fetchall(sql, tuple(params)))
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"projection read from {self.path} failed: {exc}") from exc

    async def load_checkpoint(self) -> int:
        """The last applied position."""
        rows = await self._fetch(
            "SELECT position FROM projection_checkpoints WHERE name = ?", (_CHECKPOINT,)
        )
        return int(rows[0][0]) if rows else 0

    async def load_stats(self) -> dict[str, int]:
        """Counts by state."""
        rows = await self._fetch("SELECT status, count FROM projection_stats")
        return {status: int(count) for status, count in rows}

    async def load_workflows(self, workflow_ids: Iterable[int]) -> dict[int, Workflow]:
        """Stored rows for these ids."""
        ids = list(workflow_ids)
        found: dict[int, Workflow] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self._fetch(
                f"SELECT workflow_id, state FROM projection_workflows "
                f"WHERE workflow_id IN ({marks})",
                chunk,
            )
            found.update((int(i), _decoder.decode(state)) for i, state in rows)
        return found

    async def save(
        self, workflows: Mapping[int, Workflow], stats_delta: Mapping[str, int], position: int
    ) -> None:
        """Rows, stats deltas and checkpoint in one transaction."""
        rows = [
            (
                workflow_id,
                w.state.value,
                int(w.deleted),
                int(needs_engine(w)),
                position,
                _encoder.encode(w).decode(),
            )
            for workflow_id, w in workflows.items()
        ]

        async def write(conn: aiosqlite.Connection) -> None:
            if rows:
                await conn.executemany(
                    "INSERT OR REPLACE INTO projection_workflows "
                    "(workflow_id, status, deleted, needs_engine, position, state) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
            deltas = [(status, delta) for status, delta in stats_delta.items() if delta]
            if deltas:
                await conn.executemany(
                    "INSERT INTO projection_stats (status, count) VALUES (?, ?) "
                    "ON CONFLICT (status) DO UPDATE SET count = count + excluded.count",
                    deltas,
                )
            await conn.execute(
                "INSERT INTO projection_checkpoints (name, position) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (_CHECKPOINT, position),
            )

        await self._store.write_transaction(write)

    async def unfinished_workflow_ids(self) -> list[int]:
        """Workflows the engine must resume."""
        rows = await self._fetch(
            "SELECT workflow_id FROM projection_workflows WHERE needs_engine = 1 "
            "ORDER BY workflow_id"
        )
        return [int(row[0]) for row in rows]

    async def max_workflow_id(self) -> int:
        """Highest id seen."""
        rows = await self._fetch("SELECT COALESCE(MAX(workflow_id), 0) FROM projection_workflows")
        return int(rows[0][0])
