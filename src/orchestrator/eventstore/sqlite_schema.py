"""The SQLite log's schema: its tables and triggers, connections, migrations, row decoding."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shlex
import sqlite3
import urllib.parse
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

import aiosqlite
import msgspec

from orchestrator.eventstore.base import RecordedEvent
from orchestrator.eventstore.chain import GENESIS, event_hash
from orchestrator.eventstore.errors import EventStoreError, SchemaTooNew, StoreUnavailable
from orchestrator.eventstore.sqlite_codec import (
    EVENTS_TABLE,
    LOOKUP_TABLES,
    RowCodec,
    build_dictionary,
    compact_rows,
    load_lookups,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: 1: the first release (no hash chain); 2: adds `schema_version` and the chain `hash`; 3: the
#: compact rows of sqlite_codec.py (interned types and metadata, deflated payloads, binary hashes
#: and integer times), with the lookup tables they refer to.
#: The `idempotency_keys` table beside the log needs no new version: it is created when missing,
#: and a release that does not know it leaves it alone (its keys then simply expire).
SCHEMA_VERSION = 3

_SCHEMA = f"""
{EVENTS_TABLE}
CREATE TRIGGER IF NOT EXISTS events_refuse_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS events_refuse_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS events_refuse_replace BEFORE INSERT ON events
WHEN EXISTS (SELECT 1 FROM events WHERE position = NEW.position)
    OR EXISTS (SELECT 1 FROM events WHERE stream_id = NEW.stream_id AND version = NEW.version)
BEGIN SELECT RAISE(ABORT, 'events are append-only: an insert may not replace an event'); END;
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key          TEXT    PRIMARY KEY,
    request_hash BLOB    NOT NULL,
    created_at   REAL    NOT NULL,
    stream_id    TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    status       INTEGER,
    body         BLOB
);
CREATE INDEX IF NOT EXISTS idempotency_keys_by_age ON idempotency_keys (created_at);
{LOOKUP_TABLES}
"""

COLUMNS = "position, stream_id, version, type, data, metadata, recorded_at, schema_version, hash"
INSERT = f"INSERT INTO events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_metadata_decoder = msgspec.json.Decoder(dict)


#: The tables of the original FastAPI orchestrator's database (its SQLAlchemy models). Ours are
#: `events` and `projection_*`, so the names never collide.
ORIGINAL_TABLES = ("workflows", "workflow_transitions", "tasks")


class OriginalDatabase(EventStoreError):
    """The file is the original orchestrator's database, not a log: opening it as one would add
    our tables to it (and set WAL mode), so it is refused, naming the command that imports it."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"{path} is a database of the original orchestrator; import it into a new database "
            f"with: DATABASE_URL=sqlite:///new.db orchestrator import-original {shlex.quote(path)}"
        )


def refuse_original_database(path: str) -> None:
    """Raise OriginalDatabase if `path` holds the original's tables and no `events` table.

    Looks through a read-only connection, so the file is left exactly as it was. A missing or
    unreadable file passes: opening it for real reports what is wrong with it.
    """
    if not os.path.isfile(path):
        return
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=1.0)) as conn:
            found = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.Error:
        return
    names = {name for (name,) in found}
    if names.issuperset(ORIGINAL_TABLES) and "events" not in names:
        raise OriginalDatabase(path)


async def connect(path: str, busy_timeout_ms: int) -> aiosqlite.Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves) with WAL and FULL sync."""
    _create_private(path)
    try:
        conn = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"cannot open SQLite database {path!r}: {exc}") from exc
    try:
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = FULL")
    except sqlite3.Error as exc:
        await conn.close()  # its thread would otherwise keep the process alive
        raise StoreUnavailable(f"cannot open SQLite database {path!r}: {exc}") from exc
    return conn


async def run_on(conn: aiosqlite.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """`work(connection)` on the sqlite3 connection under `conn`, in `conn`'s own thread, in
    one hand-over: what several statements cost in one go, rather than one thread hop (two
    thread wake-ups) per statement. `work` runs between the statements queued before and after
    it, as a statement of `conn` would."""
    sqlite = conn._conn  # aiosqlite has no public way to run a function in its thread
    result: T = await conn._execute(work, sqlite)  # type: ignore[no-untyped-call]
    return result


def _create_private(path: str) -> None:
    # SQLite would create a new database with the process's umask (often world-readable), and it
    # gives the -wal and -shm files the database file's mode. Creating the file first, empty
    # (a new database to SQLite) and 0600, keeps all three readable by this user only.
    with contextlib.suppress(OSError):  # it exists, or SQLite reports why it cannot be opened
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


async def migrate(conn: aiosqlite.Connection, path: str) -> None:
    """Create the schema, or bring an older file up to SCHEMA_VERSION; refuse a newer one."""
    try:
        await conn.execute("BEGIN IMMEDIATE")
        rows = await conn.execute_fetchall("PRAGMA user_version")
        found = next(iter(rows))[0]
        if found > SCHEMA_VERSION:
            await conn.execute("ROLLBACK")
            raise SchemaTooNew(
                f"{path} has event schema {found}; this release knows up to {SCHEMA_VERSION}"
            )
        if found == 1:
            await _migrate_1_to_2(conn)
        if found in (1, 2):
            await _migrate_2_to_3(conn, path)
        for statement in _split_statements(_SCHEMA):
            await conn.execute(statement)
        await conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        await conn.execute("COMMIT")
    except sqlite3.Error as exc:
        with contextlib.suppress(sqlite3.Error):
            await conn.execute("ROLLBACK")
        raise StoreUnavailable(f"cannot prepare the event schema in {path}: {exc}") from exc


async def _migrate_1_to_2(conn: aiosqlite.Connection) -> None:
    """Add the schema and hash columns and chain the events already stored.

    Their payloads are in the event schema that release wrote (2: the same shapes as now). The
    append-only trigger is dropped for the length of this transaction only: the schema
    statements that follow create it again before the commit.
    """
    columns = {row[1] for row in await conn.execute_fetchall("PRAGMA table_info(events)")}
    if "schema_version" not in columns:
        await conn.execute(
            "ALTER TABLE events ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 2"
        )
    if "hash" not in columns:
        await conn.execute("ALTER TABLE events ADD COLUMN hash TEXT NOT NULL DEFAULT ''")
    await conn.execute("DROP TRIGGER IF EXISTS events_refuse_update")
    previous, after = GENESIS, 0
    while rows := list(
        await conn.execute_fetchall(
            f"SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT 5000",
            (after,),
        )
    ):
        hashes = []
        for row in rows:
            event = row_to_event(row)
            previous = event_hash(previous, **event.stored_fields())
            hashes.append((previous, event.position))
        await conn.executemany("UPDATE events SET hash = ? WHERE position = ?", hashes)
        after = rows[-1][0]


async def _migrate_2_to_3(conn: aiosqlite.Connection, path: str) -> None:
    """Rewrite every event in the compact form (sqlite_codec.py), in the one transaction of
    the migration.

    The table is made anew, as its columns' declared types change (a TEXT column would store
    an id or a time as text). Each row is read as schema 2 stored it and written with the
    fields the chain hashes unchanged, and its hash copied as it is (so an event edited before
    the migration still fails `verify` after it); a row that does not read as an event at all
    is copied as it is. The old table's pages go to the file's free list, for the log to grow
    into (`VACUUM` returns them to the file system).
    """
    counted = await conn.execute_fetchall("SELECT COUNT(*) FROM events")
    total = int(next(iter(counted))[0])
    if total:
        log.warning("%s: converting %d events to the compact event schema 3", path, total)
    await conn.execute("ALTER TABLE events RENAME TO events_schema_2")
    for statement in _split_statements(EVENTS_TABLE + LOOKUP_TABLES):
        await conn.execute(statement)
    codec = RowCodec()
    sample = await conn.execute_fetchall(
        "SELECT type, data FROM events_schema_2 ORDER BY position DESC LIMIT 1000"
    )
    dictionary = build_dictionary((t, d) for t, d in sample if isinstance(d, str | bytes))
    if len(dictionary) >= 64:
        await conn.execute(
            "INSERT INTO event_dictionaries (id, dictionary) VALUES (1, ?)", (dictionary,)
        )
        codec.learn_dictionaries([(1, dictionary)])
    after = -1
    while rows := list(
        await conn.execute_fetchall(
            f"SELECT {COLUMNS} FROM events_schema_2 WHERE position > ? ORDER BY position "
            "LIMIT 5000",
            (after,),
        )
    ):
        after = rows[-1][0]
        inserts: list[tuple[object, ...]] = []
        payloads: list[str | bytes] = []
        verbatim: list[tuple[object, ...]] = []
        for row in rows:
            try:
                fields = row_to_event(row).stored_fields()
            except (ValueError, TypeError, msgspec.DecodeError, UnicodeDecodeError):
                verbatim.append(tuple(row))
                continue
            inserts.append((*fields.values(), row[8]))
            payloads.append(codec.pack_payload(fields["data"]))
        compact, committed = await run_on(
            conn, functools.partial(compact_rows, codec=codec, inserts=inserts, payloads=payloads)
        )
        committed()  # the codec lives as long as this transaction
        await conn.executemany(INSERT, compact + verbatim)
    await conn.execute("DROP TABLE events_schema_2")


def stored_events(conn: sqlite3.Connection) -> list[RecordedEvent]:
    """Every event of the file, in position order, through a plain sqlite3 connection: for
    tools and tests that look at the file itself (rows of either form, see sqlite_codec.py)."""
    codec = RowCodec()
    load_lookups(conn, codec)
    rows = conn.execute(f"SELECT {COLUMNS} FROM events ORDER BY position").fetchall()
    return [codec.event(row) for row in rows]


def row_to_event(row: sqlite3.Row) -> RecordedEvent:
    """A row of schema 1 or 2 (every column text, in COLUMNS order) as an event."""
    position, stream_id, version, type_, data, metadata, recorded_at, schema, hash_ = row
    return RecordedEvent(
        position=position,
        stream_id=stream_id,
        version=version,
        type=type_,
        data=data.encode() if isinstance(data, str) else bytes(data),
        metadata=_metadata_decoder.decode(metadata),
        recorded_at=datetime.fromisoformat(recorded_at),
        schema_version=schema,
        hash=hash_,
    )


def _split_statements(script: str) -> list[str]:
    # Triggers contain inner semicolons, so split on the statement-ending "END;" and ");" lines.
    statements: list[str] = []
    current: list[str] = []
    for line in script.strip().splitlines():
        current.append(line)
        if line.rstrip().endswith(("END;", ");")):
            statements.append("\n".join(current))
            current = []
    return statements
