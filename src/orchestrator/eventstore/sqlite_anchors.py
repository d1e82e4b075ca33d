"""Head checkpoints of a SQLite log: its `anchors` table, and the anchor file beside the database
(a copy that a replaced database file does not take with it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3

import aiosqlite

from orchestrator.eventstore.anchor_store import StoredAnchors
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
