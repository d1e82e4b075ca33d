"""Where head checkpoints are kept: a table in the SQLite file and a file beside it, or memory.

Two copies, because each survives what the other does not: the table goes wherever the database
file goes (a copy, a backup), and the anchor file `<database>.anchors` survives the database
being wiped or replaced, which takes the table with it. Both are append-only: the table by
triggers, like the events table, the file by being opened only to append.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from dataclasses import dataclass, field
from typing import Protocol

import aiosqlite

from orchestrator.eventstore.anchors import (
    Anchor,
    AnchorFileError,
    anchor_file_path,
    append_to_file,
    read_file,
)
from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.eventstore.sqlite_schema import connect

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS anchors (
        seq      INTEGER PRIMARY KEY,
        position INTEGER NOT NULL,
        hash     TEXT    NOT NULL,
        at       TEXT    NOT NULL,
        key_id   TEXT,
        mac      TEXT
    )""",
    """CREATE TRIGGER IF NOT EXISTS anchors_refuse_update BEFORE UPDATE ON anchors
    BEGIN SELECT RAISE(ABORT, 'anchors are append-only: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS anchors_refuse_delete BEFORE DELETE ON anchors
    BEGIN SELECT RAISE(ABORT, 'anchors are append-only: DELETE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS anchors_refuse_replace BEFORE INSERT ON anchors
    WHEN EXISTS (SELECT 1 FROM anchors WHERE seq = NEW.seq)
    BEGIN SELECT RAISE(ABORT, 'anchors are append-only: an insert may not replace one'); END""",
)
_FIELDS = "position, hash, at, key_id, mac"


@dataclass
class StoredAnchors:
    """Every checkpoint found, by where it was found, and the lines that were not checkpoints."""

    #: (where, checkpoints) pairs: "the database", the anchor file's path, an exported copy.
    sources: list[tuple[str, list[Anchor]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Sentences about copies that were expected but not found (not violations by themselves).
    notes: list[str] = field(default_factory=list)


class AnchorStore(Protocol):
    """Keeps head checkpoints, append-only."""

    async def open(self) -> None:
        """Prepare the storage (the event store must be open)."""

    async def close(self) -> None:
        """Release what `open` took."""

    async def last(self) -> Anchor | None:
        """The most recent checkpoint, None if there is none."""

    async def append(self, anchor: Anchor) -> None:
        """Keep one more checkpoint, durably, in every copy."""

    async def read(self) -> StoredAnchors:
        """Every checkpoint kept, from every copy."""


class InMemoryAnchors:
    """Checkpoints of an in-memory log: they live exactly as long as the log they pin."""

    def __init__(self) -> None:
        self._anchors: list[Anchor] = []

    async def open(self) -> None:
        """Nothing to prepare."""

    async def close(self) -> None:
        """Nothing to release."""

    async def last(self) -> Anchor | None:
        """The most recent checkpoint."""
        return self._anchors[-1] if self._anchors else None

    async def append(self, anchor: Anchor) -> None:
        """Keep it in the list."""
        self._anchors.append(anchor)

    async def read(self) -> StoredAnchors:
        """Every checkpoint, as one source."""
        return StoredAnchors(sources=[("memory", list(self._anchors))])


class SQLiteAnchors:
    """The `anchors` table of a SQLite log plus the anchor file beside the database."""

    def __init__(self, store: SQLiteEventStore, file_path: str | None = None) -> None:
        self._store = store
        self.file_path = file_path or anchor_file_path(store.path)
        self._conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        """Create the table if it is missing and connect for reads."""

        async def create(conn: aiosqlite.Connection) -> None:
            for statement in _SCHEMA:
                await conn.execute(statement)

        await self._store.write_transaction(create)
        self._conn = await connect(self._store.path, 10_000)

    async def close(self) -> None:
        """Close the read connection."""
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                await self._conn.close()
            self._conn = None

    async def _table(self, sql: str) -> list[Anchor]:
        if self._conn is None:
            raise StoreUnavailable("the anchor table is not open")
        try:
            rows = await self._conn.execute_fetchall(sql)
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"read of anchors from {self._store.path} failed: {exc}"
            ) from exc
        return [
            Anchor(position=int(p), hash=str(h), at=str(a), key_id=k, mac=m)
            for p, h, a, k, m in rows
        ]

    async def last(self) -> Anchor | None:
        """The table's most recent checkpoint."""
        found = await self._table(f"SELECT {_FIELDS} FROM anchors ORDER BY seq DESC LIMIT 1")
        return found[0] if found else None

    async def append(self, anchor: Anchor) -> None:
        """Insert it into the table, then append it to the anchor file (fsync'ed)."""

        async def insert(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                f"INSERT INTO anchors ({_FIELDS}) VALUES (?, ?, ?, ?, ?)",
                (anchor.position, anchor.hash, anchor.at, anchor.key_id, anchor.mac),
            )

        await self._store.write_transaction(insert)
        try:
            await asyncio.to_thread(append_to_file, self.file_path, anchor)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot append to the anchor file {self.file_path}: {exc.strerror}"
            ) from exc

    async def read(self) -> StoredAnchors:
        """The table's checkpoints and the anchor file's; a missing file is noted, not an error."""
        found = StoredAnchors()
        table = await self._table(f"SELECT {_FIELDS} FROM anchors ORDER BY seq")
        found.sources.append(("the database", table))
        if os.path.exists(self.file_path):
            try:
                anchors, problems = read_file(self.file_path)
            except AnchorFileError as exc:
                found.problems.append(str(exc))
            else:
                found.sources.append((self.file_path, anchors))
                found.problems.extend(problems)
        elif table:
            found.notes.append(
                f"the anchor file {self.file_path} is missing: a replaced database would not be "
                "caught (keep it beside the database, or pass an exported copy with --anchors)"
            )
        return found


async def read_sqlite_anchors(
    store: SQLiteEventStore, exported: str | None = None
) -> StoredAnchors:
    """The checkpoints of a SQLite log (its table and anchor file), plus an exported copy.

    AnchorFileError if the exported copy cannot be read: the operator named it, so it must count.
    """
    anchors = SQLiteAnchors(store)
    await anchors.open()
    try:
        found = await anchors.read()
    finally:
        await anchors.close()
    if exported is not None and not _same_file(exported, anchors.file_path):
        extra, problems = read_file(exported)
        found.sources.append((exported, extra))
        found.problems.extend(problems)
    return found


def _same_file(one: str, other: str) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False
