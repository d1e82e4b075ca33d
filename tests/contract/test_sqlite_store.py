"""What only the SQLite event store promises: the file itself refuses changes to the log, the schema
is versioned, WAL is on, and several stores (processes) can share one file safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import msgspec
import pytest

from orchestrator.eventstore.base import NewEvent, RecordedEvent
from orchestrator.eventstore.errors import (
    ConcurrencyConflict,
    EventStoreError,
    SchemaTooNew,
    StoreUnavailable,
)
from orchestrator.eventstore.sqlite import SCHEMA_VERSION, SQLiteEventStore

PROMPT = 5.0


def new_event(n: int) -> NewEvent:
    """A small event whose payload and metadata both say `n`."""
    return NewEvent(type="Happened", data=msgspec.json.encode({"n": n}), metadata={"n": n})


def raw_rows(path: Path) -> list[tuple[object, ...]]:
    """Every row of the events table, read with the stdlib driver, bypassing the store."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT * FROM events ORDER BY position").fetchall()


def pragma(path: Path, name: str) -> object:
    """The value of `PRAGMA name` in the file at `path`."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where this test's database file lives."""
    return tmp_path / "events.db"


@pytest.fixture
async def sqlite_store(db_path: Path) -> AsyncIterator[SQLiteEventStore]:
    """An open SQLite store on a fresh file, closed after the test."""
    store = SQLiteEventStore(str(db_path))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# Append-only, enforced by the file ----------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param(
            "UPDATE events SET data = '{\"n\": 666}' WHERE position = 1", id="update-payload"
        ),
        pytest.param("UPDATE events SET type = 'Forged', version = 9", id="update-every-row"),
        pytest.param("UPDATE OR REPLACE events SET stream_id = 'x'", id="update-or-replace"),
        pytest.param(
            "INSERT INTO events SELECT * FROM events WHERE position = 1 "
            "ON CONFLICT (position) DO UPDATE SET type = 'Forged'",
            id="upsert",
        ),
        pytest.param("DELETE FROM events WHERE position = 1", id="delete-one"),
        pytest.param("DELETE FROM events", id="delete-all"),
        pytest.param(
            "CREATE TEMP TABLE forged AS SELECT * FROM events WHERE position = 1; "
            "UPDATE forged SET type = 'Forged'; "
            "INSERT OR REPLACE INTO events SELECT * FROM forged",
            id="replace-same-position",
        ),
        pytest.param(
            "CREATE TEMP TABLE forged AS SELECT * FROM events WHERE position = 1; "
            "UPDATE forged SET type = 'Forged', position = 99; "
            "REPLACE INTO events SELECT * FROM forged",
            id="replace-same-stream-version",
        ),
    ],
)
@pytest.mark.anyio
async def test_the_database_refuses_to_change_or_remove_a_recorded_event(
    sqlite_store: SQLiteEventStore, db_path: Path, statement: str
) -> None:
    await sqlite_store.append("workflow-1", 0, [new_event(1), new_event(2)])
    before = raw_rows(db_path)
    assert len(before) == 2

    refused: sqlite3.Error | None = None
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        try:
            # Closing the connection rolls back whatever the refused script left open.
            conn.executescript(f"BEGIN; {statement}; COMMIT;")
        except sqlite3.DatabaseError as exc:
            refused = exc

    assert refused is not None, f"the database accepted: {statement}"
    assert "append-only" in str(refused)
    assert raw_rows(db_path) == before
    assert [msgspec.json.decode(e.data) for e in await sqlite_store.read_all()] == [
        {"n": 1},
        {"n": 2},
    ]


# Schema -------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_schema_version_is_recorded_in_the_file(
    sqlite_store: SQLiteEventStore, db_path: Path
) -> None:
    assert SCHEMA_VERSION >= 1
    assert pragma(db_path, "user_version") == SCHEMA_VERSION


@pytest.mark.anyio
async def test_a_file_written_by_a_newer_release_is_refused_and_left_alone(db_path: Path) -> None:
    newer = SCHEMA_VERSION + 1
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.execute(f"PRAGMA user_version = {newer}")
    store = SQLiteEventStore(str(db_path))

    try:
        with pytest.raises(SchemaTooNew, match=f"schema {newer}"):
            await store.open()
    finally:
        await store.close()

    assert isinstance(SchemaTooNew("x"), EventStoreError)
    assert pragma(db_path, "user_version") == newer
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert tables == []


#: The events table as the first release wrote it (git 401db03): no schema_version, no hash.
FIRST_RELEASE_FILE = """
CREATE TABLE events (
    position    INTEGER PRIMARY KEY,
    stream_id   TEXT    NOT NULL,
    version     INTEGER NOT NULL CHECK (version >= 1),
    type        TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    metadata    TEXT    NOT NULL,
    recorded_at TEXT    NOT NULL,
    UNIQUE (stream_id, version)
);
INSERT INTO events
    VALUES (1, 'workflow-1', 1, 'Happened', '{"n":1}', '{"n":1}', '2026-01-01T00:00:00+00:00');
PRAGMA user_version = 1;
"""


@pytest.mark.anyio
async def test_a_file_from_the_first_release_is_migrated_or_refused_at_open(db_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.executescript(FIRST_RELEASE_FILE)
    store = SQLiteEventStore(str(db_path))

    try:
        try:
            await store.open()
        except EventStoreError:
            return  # refusing the file up front is a fine answer; failing later is not
        log = await store.read_all()
        assert [(e.stream_id, e.version, e.data) for e in log] == [("workflow-1", 1, b'{"n":1}')]
        result = await store.append("workflow-1", 1, [new_event(2)])
        assert (result.version, result.position) == (2, 2)
    finally:
        await store.close()


def spoil_with_newer_schema(path: Path) -> None:
    """A database file from a release newer than this one."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")


def spoil_with_garbage(path: Path) -> None:
    """A file that is not a SQLite database at all."""
    path.write_bytes(b"this is not a database, just bytes " * 200)


@pytest.mark.anyio
@pytest.mark.parametrize("spoil", [spoil_with_newer_schema, spoil_with_garbage])
async def test_an_open_that_fails_leaves_no_connection_thread_behind(
    db_path: Path, spoil: Callable[[Path], None]
) -> None:
    spoil(db_path)
    threads_before = set(threading.enumerate())
    store = SQLiteEventStore(str(db_path))

    # Should a connection leak, it warns when garbage-collected and its thread keeps pytest from
    # exiting: report the leak through the assertion instead, and release what leaked.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        refused = await refused_open(store)
        leftover = await threads_still_running(threads_before, within=1.0)
        await store.close()
        gc.collect()

    assert refused in {"SchemaTooNew", "StoreUnavailable"}
    assert leftover == [], f"a refused open() left {len(leftover)} connection thread(s) running"


async def refused_open(store: SQLiteEventStore) -> str:
    """The name of the error `store.open()` raises (the traceback is dropped, not kept alive)."""
    try:
        await store.open()
    except EventStoreError as exc:
        return type(exc).__name__
    raise AssertionError("open() was expected to fail")


async def threads_still_running(
    before: set[threading.Thread], within: float
) -> list[threading.Thread]:
    """Threads started since `before` that are still alive after up to `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() > deadline:
            return extra
        await anyio.sleep(0.02)


@pytest.mark.anyio
async def test_the_file_is_in_wal_journal_mode(
    sqlite_store: SQLiteEventStore, db_path: Path
) -> None:
    await sqlite_store.append("workflow-1", 0, [new_event(1)])

    assert pragma(db_path, "journal_mode") == "wal"


# Durability and sharing ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_events_survive_closing_and_reopening_the_store(db_path: Path) -> None:
    first = SQLiteEventStore(str(db_path))
    await first.open()
    try:
        await first.append("workflow-1", 0, [new_event(1), new_event(2)])
        await first.append("workflow-2", 0, [new_event(3)])
        written = await first.read_all()
    finally:
        await first.close()

    second = SQLiteEventStore(str(db_path))
    await second.open()
    try:
        assert await second.read_all() == written
        assert await second.head_position() == 3
        with pytest.raises(ConcurrencyConflict) as caught:
            await second.append("workflow-1", 0, [new_event(4)])
        assert caught.value.actual == 2
        result = await second.append("workflow-1", 2, [new_event(4)])
        assert (result.version, result.position) == (3, 4)
    finally:
        await second.close()


@pytest.mark.anyio
async def test_two_stores_on_one_file_append_concurrently_without_locks_or_duplicates(
    db_path: Path,
) -> None:
    stores = [SQLiteEventStore(str(db_path)), SQLiteEventStore(str(db_path))]
    for store in stores:
        await store.open()
    bumpers, bumps, own_appends = 3, 10, 30

    async def bump_shared(store: SQLiteEventStore) -> None:
        # Read, then append at the version read; on a conflict, try again at the actual version.
        for _ in range(bumps):
            version = len(await store.read_stream("shared"))
            while True:
                try:
                    await store.append("shared", version, [new_event(version)])
                    break
                except ConcurrencyConflict as conflict:
                    version = conflict.actual

    async def append_own(store: SQLiteEventStore, name: str) -> None:
        for version in range(own_appends):
            await store.append(name, version, [new_event(version)])

    try:
        with anyio.fail_after(60):
            outcomes = await asyncio.gather(
                *(bump_shared(store) for store in stores for _ in range(bumpers)),
                *(append_own(store, f"own-{i}") for i, store in enumerate(stores)),
                return_exceptions=True,
            )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert failures == [], failures  # a StoreUnavailable here would be "database is locked"

        log = await stores[0].read_all(0, limit=100_000)
        assert [e.position for e in log] == list(range(1, len(log) + 1))
        shared = [e.version for e in log if e.stream_id == "shared"]
        assert shared == list(range(1, len(stores) * bumpers * bumps + 1))
        for i in range(len(stores)):
            own = [e.version for e in log if e.stream_id == f"own-{i}"]
            assert own == list(range(1, own_appends + 1))
        assert [await store.head_position() for store in stores] == [len(log), len(log)]
        assert log == await stores[1].read_all(0, limit=100_000)
    finally:
        for store in stores:
            await store.close()


@pytest.mark.anyio
async def test_a_store_notices_another_stores_commit_by_the_end_of_its_wait(
    db_path: Path,
) -> None:
    writer, watcher = SQLiteEventStore(str(db_path)), SQLiteEventStore(str(db_path))
    await writer.open()
    await watcher.open()
    try:
        await writer.append("workflow-1", 0, [new_event(1)])

        with anyio.fail_after(PROMPT):
            assert await watcher.wait_for_events(0, timeout=0.3) is True
        seen: list[RecordedEvent] = await watcher.read_all()
        assert [e.stream_id for e in seen] == ["workflow-1"]
    finally:
        await writer.close()
        await watcher.close()


@pytest.mark.anyio
async def test_using_a_store_that_is_not_open_raises_store_unavailable(db_path: Path) -> None:
    store = SQLiteEventStore(str(db_path))

    with pytest.raises(StoreUnavailable):
        await store.append("workflow-1", 0, [new_event(1)])
    with pytest.raises(StoreUnavailable):
        await store.read_all()
