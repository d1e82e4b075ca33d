"""The database kind a run measures: fresh storage for each figure, and the raw-SQL references
(one commit per event, an ordered scan) on the store's own tables.

SQLite is here; PostgreSQL is `target_postgres.py`, chosen by `--database-url`. A figure never
looks at the kind: it asks its target.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Protocol

from orchestrator.backend import make_backend
from orchestrator.eventstore.sqlite_schema import COLUMNS, INSERT
from orchestrator.settings import parse_database
from suite.context import Context

#: The payload the raw references write per event: a StepSucceeded of the built-in EXECUTE task.
RAW_DATA = (
    '{"type":"StepSucceeded","at":"2026-01-01T00:00:00Z","state":"EXECUTE","result":'
    '{"status":"executed","computation_result":41654167500,"iterations":5000},"duration":0.0007}'
)
RAW_METADATA = '{"actor":"engine","command":"FinishStep+BeginStep"}'


class Target(Protocol):
    """A database kind the suite can run on."""

    #: "sqlite" or "postgres", as DATABASE_URL's backend names it.
    kind: str
    #: The names of the raw references on this kind.
    commit_reference: str
    scan_reference: str
    #: Server settings every `orchestrator serve` of the run gets on this kind.
    server_settings: dict[str, str]

    async def fresh(self, ctx: Context, label: str) -> str:
        """A DATABASE_URL on new, empty storage, removed when the run ends."""
        ...

    async def raw_commit_rate(self, url: str, seconds: float) -> float:
        """Events/s of one connection committing one event per transaction for `seconds`, into
        the events table as the store creates it at `url` (empty storage)."""
        ...

    async def raw_scan_rate(self, url: str) -> float:
        """Rows/s of one ordered read of every row of the events table at `url`."""
        ...

    async def size_bytes(self, url: str) -> int:
        """Bytes the storage at `url` takes on disk, after a checkpoint (no server running)."""
        ...

    def dbos_settings(self, url: str) -> dict[str, str]:
        """The DBOS reference's system database on the fresh storage at `url` (which the store
        never opened): `system_database_url`, and `schema` where the kind has schemas."""
        ...

    def describe(self) -> str:
        """The kind and its durability settings, for the table's heading."""
        ...


async def create_schema(url: str) -> None:
    """Open the store at `url` once, so its own DDL creates its tables, and close it."""
    store = make_backend(parse_database(url)).store
    await store.open()
    await store.close()


class SQLiteTarget:
    """A SQLite file per figure, in the run's temporary folder (WAL, synchronous=FULL: what
    the store sets on every connection, sqlite_schema.connect)."""

    kind = "sqlite"
    commit_reference = "sqlite_commit_events_per_s"
    scan_reference = "sqlite_scan_rows_per_s"
    server_settings: dict[str, str] = {}  # noqa: RUF012 - read only

    async def fresh(self, ctx: Context, label: str) -> str:
        """A new file in a new folder (the run's folder is removed at its end)."""
        return f"sqlite:///{ctx.folder(label) / 'bench.db'}"

    async def raw_commit_rate(self, url: str, seconds: float) -> float:
        """BEGIN IMMEDIATE; INSERT; COMMIT, as fast as one connection can, for `seconds`."""
        await create_schema(url)
        return await asyncio.to_thread(_sqlite_commits, _path(url), seconds)

    async def raw_scan_rate(self, url: str) -> float:
        """SELECT every column ORDER BY position, fetched 5,000 rows at a time."""
        return await asyncio.to_thread(_sqlite_scan, _path(url))

    async def size_bytes(self, url: str) -> int:
        """The file plus its -wal, after a truncating checkpoint."""
        path = _path(url)
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wal = Path(f"{path}-wal")
        return os.path.getsize(path) + (wal.stat().st_size if wal.exists() else 0)

    def dbos_settings(self, url: str) -> dict[str, str]:
        """The fresh file itself."""
        return {"system_database_url": url}

    def describe(self) -> str:
        """SQLite and its settings."""
        return f"SQLite {sqlite3.sqlite_version}, WAL, synchronous=FULL"


def _path(url: str) -> str:
    path = parse_database(url).path
    assert path is not None, url
    return path


def _sqlite_commits(path: str, seconds: float) -> float:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        position = 0
        began = time.perf_counter()
        deadline = began + seconds
        while time.perf_counter() < deadline:
            position += 1
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                INSERT,
                (
                    position,
                    "raw-1",
                    position,
                    "StepSucceeded",
                    RAW_DATA,
                    RAW_METADATA,
                    "2026-01-01T00:00:00+00:00",
                    2,
                    f"{position:064x}",
                ),
            )
            conn.execute("COMMIT")
        return position / (time.perf_counter() - began)


def _sqlite_scan(path: str) -> float:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        began = time.perf_counter()
        cursor = conn.execute(f"SELECT {COLUMNS} FROM events ORDER BY position")
        rows = 0
        while batch := cursor.fetchmany(5000):
            rows += len(batch)
        return rows / (time.perf_counter() - began)
