"""The SQLite store's fast paths give exactly what the plain ones give.

- `read_chain` (what `verify` reads on SQLite: the hashed fields without building events) hashes
  every row as `RecordedEvent.stored_fields` does, whatever form the row is in, and `verify`
  reports the same violations through it as through `read_all`;
- `read_stream` reads on the event loop's thread, a bounded number of rows, the rest (and a busy
  database) through the reader's thread;
- `write_transaction_now(durable=False)` leaves the writer committing at synchronous=FULL;
- a group commit of many concurrent appends keeps each one's version check.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.domain.events import (
    Event,
    StepStarted,
    StepSucceeded,
    WorkflowStarted,
    WorkflowTransitioned,
    encode_event,
)
from orchestrator.domain.states import State, Trigger
from orchestrator.eventstore import sqlite as sqlite_store
from orchestrator.eventstore.base import EventStore, NewEvent, RecordedEvent
from orchestrator.eventstore.chain import (
    GENESIS,
    event_hash,
    hashed_payload,
    linked_content,
    linked_hash,
)
from orchestrator.eventstore.errors import ConcurrencyConflict
from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.eventstore.sqlite_codec import RowCodec, load_lookups
from orchestrator.eventstore.sqlite_schema import COLUMNS, INSERT, run_on
from orchestrator.history.verify import Report, verify
from orchestrator.projections.models import TASKS, WORKFLOWS, read_model_of
from orchestrator.projections.rebuild import paused_collector, rebuild
from orchestrator.projections.sqlite import INDEXES
from orchestrator.projections.sqlite_tables import SQLiteReadModelTables
from tests.contract.test_sqlite_compact_rows import dictionary_learned

AT = datetime(2026, 1, 1, tzinfo=UTC)


def workflow_events(workflow_id: int) -> list[NewEvent]:
    """A legal start of a workflow: started, its INIT step run, moved on to PREPARE."""
    events: list[Event] = [
        WorkflowStarted(at=AT, workflow_id=workflow_id, name=f"w-{workflow_id} é ✓"),
        StepStarted(at=AT, state=State.INIT, task="initialize"),
        StepSucceeded(at=AT, state=State.INIT, result={"status": "initialized", "n": workflow_id}),
        WorkflowTransitioned(
            at=AT, from_state=State.INIT, to_state=State.PREPARE, trigger=Trigger.PREPARE
        ),
        StepStarted(at=AT, state=State.PREPARE, task="prepare"),
    ]
    return [
        NewEvent(
            type=type(event).__name__,
            data=encode_event(event),
            metadata={"actor": "engine", "n": workflow_id % 2},
            schema_version=2,
        )
        for event in events
    ]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where this test's database file lives."""
    return tmp_path / "events.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteEventStore]:
    """An open store that learns its payloads' dictionary early."""
    opened = SQLiteEventStore(str(db_path), learn_after=20)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def fill(store: SQLiteEventStore, workflows: int) -> None:
    """`workflows` workflows, appended one event at a time, interleaved."""
    await fill_more(store, 0, workflows)


async def fill_more(store: SQLiteEventStore, first: int, last: int) -> None:
    """Workflows `first` + 1 to `last`, appended one event at a time, interleaved."""
    for step in range(5):
        for n in range(first + 1, last + 1):
            await store.append(f"workflow-{n}", step, [workflow_events(n)[step]])


@contextlib.contextmanager
def writable(path: Path) -> Iterator[sqlite3.Connection]:
    """The file as someone editing it by hand has it: the append-only triggers dropped."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        for name in ("events_refuse_update", "events_refuse_delete", "events_refuse_replace"):
            connection.execute(f"DROP TRIGGER IF EXISTS {name}")
        yield connection
    finally:
        connection.close()


def stored_rows(path: Path) -> tuple[RowCodec, list[tuple[Any, ...]]]:
    """A codec with every lookup of the file, and every row as stored."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        codec = RowCodec()
        load_lookups(connection, codec)
        rows = connection.execute(f"SELECT {COLUMNS} FROM events ORDER BY position").fetchall()
    return codec, rows


class EventsOnly:
    """The store seen only through `read_all`: what `verify` reads from a backend without
    `read_chain`."""

    def __init__(self, store: SQLiteEventStore) -> None:
        self._store = store

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        return await self._store.read_all(after, limit)


def violations(report: Report) -> list[tuple[int, str, str]]:
    return [(v.position, v.stream_id, v.reason) for v in report.violations]


# The chain over hashed fields ---------------------------------------------------------------


#: Text without lone surrogates (which cannot be stored as UTF-8 at all).
_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)


@given(
    position=st.integers(min_value=1, max_value=2**62),
    stream_id=_TEXT,
    version=st.integers(min_value=1, max_value=2**40),
    type_=_TEXT,
    data=st.binary(max_size=200),
    metadata=st.dictionaries(
        _TEXT, st.one_of(_TEXT, st.integers(), st.floats(), st.none()), max_size=3
    ),
    micros=st.integers(min_value=0, max_value=2**50),
    schema_version=st.integers(min_value=1, max_value=9),
)
def test_a_hash_over_the_hashed_fields_is_the_events_hash(
    position: int,
    stream_id: str,
    version: int,
    type_: str,
    data: bytes,
    metadata: dict[str, Any],
    micros: int,
    schema_version: int,
) -> None:
    event = RecordedEvent(
        position=position,
        stream_id=stream_id,
        version=version,
        type=type_,
        data=data,  # not always UTF-8: hashed with undecodable bytes replaced, as stored_fields
        metadata=metadata,
        recorded_at=datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros),
        schema_version=schema_version,
    )
    expected = event_hash(GENESIS, **event.stored_fields())

    content = linked_content(
        position,
        stream_id,
        version,
        type_,
        hashed_payload(data),
        msgspec.json.encode(metadata),
        event.recorded_at.isoformat().encode(),
        schema_version,
    )

    assert linked_hash(GENESIS, content) == expected


@pytest.mark.anyio
async def test_read_chain_hashes_every_row_form_as_the_events_read_from_it(
    store: SQLiteEventStore, db_path: Path
) -> None:
    await fill(store, 8)  # text payloads, then deflated ones with the dictionary
    head = await store.head_position()
    # Rows as older releases or imports left them: all text, a time that is not UTC, metadata
    # that is not in msgspec's own form, a payload deflated without a dictionary whose bytes
    # are not UTF-8. Their hashes are what their events hash to, so the chain must hold.
    odd_time = datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=2))).isoformat()
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    not_utf8 = b"\x00" + deflater.compress(b'{"x":"\xff\xfe"}') + deflater.flush()
    with writable(db_path) as connection:
        previous = str(
            connection.execute(
                "SELECT hex(hash) FROM events WHERE position = ?", (head,)
            ).fetchone()[0]
        ).lower()
        odd_rows: list[tuple[str | bytes, str, str]] = [
            ('{"n": 1}', '{"actor": "import", "note": "\\u00e9"}', odd_time),
            (not_utf8, '{"actor":"import"}', AT.isoformat()),
            ('{"n":3}', "{}", "2026-01-01T00:00:00.000000+00:00"),
            ('{"n":4}', '{"actor" : "legacy", "n": 1.50}', AT.isoformat()),
        ]
        # The last one's metadata by id, as a compact row refers to it.
        legacy = 1 + connection.execute("SELECT MAX(id) FROM event_metadata").fetchone()[0]
        connection.execute(
            "INSERT INTO event_metadata (id, metadata) VALUES (?, ?)", (legacy, odd_rows[-1][1])
        )
        for offset, (data, metadata, recorded_at) in enumerate(odd_rows, start=1):
            stored = legacy if offset == len(odd_rows) else metadata
            row = [head + offset, "other-1", offset, "Odd", data, stored, recorded_at, 1, ""]
            event = RecordedEvent(
                position=head + offset,
                stream_id="other-1",
                version=offset,
                type="Odd",
                data=data.encode() if isinstance(data, str) else zlib.decompress(data[1:], -15),
                metadata=msgspec.json.decode(metadata),
                recorded_at=datetime.fromisoformat(recorded_at),
                schema_version=1,
            )
            previous = row[8] = event_hash(previous, **event.stored_fields())
            connection.execute(INSERT, row)

    codec, rows = stored_rows(db_path)
    events, chained = codec.events(rows), codec.chained(rows)
    through_store = []
    after = 0
    while page := await store.read_chain(after, 7):
        through_store += page
        after = page[-1][0]

    assert through_store == chained
    previous = GENESIS
    for event, (position, stream, version, type_, data, schema, content, hash_) in zip(
        events, chained, strict=True
    ):
        assert (position, stream, version, type_, data, schema, hash_) == (
            event.position,
            event.stream_id,
            event.version,
            event.type,
            event.data,
            event.schema_version,
            event.hash,
        )
        assert linked_hash(previous, content) == event_hash(previous, **event.stored_fields())
        assert linked_hash(previous, content) == hash_, position
        previous = hash_
    report = await verify(store)
    assert report.ok, report.violations


@pytest.mark.anyio
async def test_verify_finds_the_same_violations_through_read_chain_as_through_read_all(
    store: SQLiteEventStore, db_path: Path
) -> None:
    await fill(store, 12)
    codec, rows = stored_rows(db_path)
    events = codec.events(rows)
    by_stream: dict[str, list[RecordedEvent]] = {}
    for event in events:
        by_stream.setdefault(event.stream_id, []).append(event)
    with writable(db_path) as connection:
        # A payload edited (its hash no longer holds), a hash edited, a version skipped.
        edited = by_stream["workflow-2"][2]
        connection.execute(
            "UPDATE events SET data = ? WHERE position = ?",
            (edited.data.decode().replace("initialized", "tampered"), edited.position),
        )
        connection.execute(
            "UPDATE events SET hash = ? WHERE position = ?",
            (bytes(32), by_stream["workflow-5"][1].position),
        )
        connection.execute(
            "UPDATE events SET version = 9 WHERE position = ?",
            (by_stream["workflow-7"][3].position,),
        )
        # A payload that decodes as no event, and an illegal step, each with a correct hash.
        last = events[-1]
        previous = last.hash
        for offset, (stream, version, data) in enumerate(
            (
                ("workflow-9", 6, b'{"type":"Nonsense"}'),
                ("workflow-10", 6, encode_event(StepStarted(at=AT, state=State.EXECUTE, task="x"))),
            ),
            start=1,
        ):
            event = msgspec.structs.replace(
                last, position=last.position + offset, stream_id=stream, version=version, data=data
            )
            previous = event_hash(previous, **event.stored_fields())
            connection.execute(INSERT, (*event.stored_fields().values(), previous))

    fast = await verify(store)
    plain = await verify(cast(EventStore, EventsOnly(store)))

    assert not fast.ok
    assert violations(fast) == violations(plain)
    assert (fast.events, fast.streams, fast.more_violations) == (
        plain.events,
        plain.streams,
        plain.more_violations,
    )
    reasons = " | ".join(reason for _, _, reason in violations(fast))
    for found in ("hash chain broken", "version 9 where", "does not decode", "illegal StepStarted"):
        assert found in reasons


# read_stream on the loop's thread -----------------------------------------------------------


@pytest.mark.anyio
async def test_a_stream_longer_than_a_direct_read_is_read_whole(
    store: SQLiteEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fill(store, 3)
    whole = await store.read_all(0, 1000)
    monkeypatch.setattr(sqlite_store, "_ROWS_NOW", 2)

    read = await store.read_stream("workflow-2")
    up_to = await store.read_stream("workflow-2", up_to_version=3)
    none = await store.read_stream("workflow-2", up_to_version=0)

    assert read == [e for e in whole if e.stream_id == "workflow-2"]
    assert up_to == read[:3]
    assert none == []


class _Busy:
    """A connection that finds the database locked, as a direct read might."""

    def __init__(self, connection: sqlite3.Connection | None) -> None:
        self._connection = connection

    def execute(self, *args: object) -> Any:
        raise sqlite3.OperationalError("database is locked")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


@pytest.mark.anyio
async def test_a_busy_direct_read_goes_to_the_readers_thread(store: SQLiteEventStore) -> None:
    await fill(store, 2)
    expected = await store.read_stream("workflow-1")
    store._direct = cast(sqlite3.Connection, _Busy(store._direct))

    assert await store.read_stream("workflow-1") == expected
    assert await store.read_stream("workflow-1", up_to_version=2) == expected[:2]


@pytest.mark.anyio
async def test_a_direct_read_from_another_thread_goes_to_the_readers_thread(
    store: SQLiteEventStore,
) -> None:
    await fill(store, 2)
    expected = await store.read_stream("workflow-2")

    # The direct connection belongs to the loop's thread: elsewhere sqlite3 refuses it.
    found = await asyncio.to_thread(asyncio.run, store.read_stream("workflow-2"))

    assert found == expected


# Transactions that need no sync -------------------------------------------------------------


async def writer_synchronous(store: SQLiteEventStore) -> int:
    writer = store._writer
    assert writer is not None
    level: int = await run_on(writer, lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
    return level


@pytest.mark.anyio
async def test_a_transaction_that_need_not_be_durable_leaves_the_writer_syncing(
    store: SQLiteEventStore,
) -> None:
    full = 2

    def create(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE scratch (n INTEGER)")
        conn.execute("INSERT INTO scratch VALUES (1)")

    def fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO scratch VALUES (2)")
        raise ValueError("refused")

    await store.write_transaction_now(create, durable=False)
    assert await writer_synchronous(store) == full
    with pytest.raises(ValueError, match="refused"):
        await store.write_transaction_now(fail, durable=False)
    assert await writer_synchronous(store) == full
    await store.append("workflow-1", 0, workflow_events(1)[:1])

    def count(conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT COUNT(*) FROM scratch").fetchone()[0])

    assert await store.write_transaction_now(count) == 1  # the failed one was rolled back
    assert len(await store.read_stream("workflow-1")) == 1


@pytest.mark.anyio
async def test_a_writer_left_relaxed_syncs_again_before_the_next_durable_commit(
    store: SQLiteEventStore,
) -> None:
    full = 2
    writer = store._writer
    assert writer is not None

    def relax(conn: sqlite3.Connection) -> None:
        # As if restoring FULL after a transaction that need not be durable had failed.
        conn.execute("PRAGMA synchronous = NORMAL")
        store._relaxed = True

    await run_on(writer, relax)
    await store.append("workflow-1", 0, workflow_events(1)[:1])

    assert await writer_synchronous(store) == full


# Group commit --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_appends_racing_for_the_same_versions_in_one_batch_each_get_their_own_outcome(
    store: SQLiteEventStore,
) -> None:
    events = workflow_events(1)
    # Every append is queued before the writer runs: they share group commits.
    outcomes = await asyncio.gather(
        *(store.append(f"workflow-{n % 4 + 1}", 0, events[:1]) for n in range(16)),
        return_exceptions=True,
    )

    won = [o for o in outcomes if not isinstance(o, BaseException)]
    lost = [o for o in outcomes if isinstance(o, ConcurrencyConflict)]
    assert len(won) == 4 and len(lost) == 12
    assert sorted(o.position for o in won) == [1, 2, 3, 4]
    for n in range(1, 5):
        assert [e.version for e in await store.read_stream(f"workflow-{n}")] == [1]
    assert (await verify(store)).ok


# Helpers of the bulk passes -----------------------------------------------------------------


def test_the_collector_is_paused_for_a_pass_and_left_as_it_was() -> None:
    was = gc.isenabled()
    try:
        gc.enable()
        with paused_collector():
            assert not gc.isenabled()
        assert gc.isenabled()
        gc.disable()
        with paused_collector():
            assert not gc.isenabled()
        assert not gc.isenabled()
        gc.enable()
        with pytest.raises(RuntimeError), paused_collector():
            raise RuntimeError("stop")
        assert gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


def test_read_models_of_streams_are_the_same_asked_again() -> None:
    streams = [f"workflow-{n}" for n in range(20_000)] + ["task-7", "other-1", "workflow-x"]

    first = [read_model_of(stream) for stream in streams]
    again = [read_model_of(stream) for stream in reversed(streams)]

    assert first == list(reversed(again))
    assert first[5] == (WORKFLOWS, 5)
    assert first[-3:] == [(TASKS, 7), None, None]


@pytest.mark.anyio
async def test_a_rebuild_fills_tables_without_indexes_and_swaps_in_indexed_ones(
    store: SQLiteEventStore, db_path: Path
) -> None:
    await fill(store, 5)
    tables = SQLiteReadModelTables(store)
    scratch = tables.storage("rebuild_")
    await scratch.open()
    await scratch.close()

    def indexes() -> set[str]:
        with contextlib.closing(sqlite3.connect(db_path)) as connection:
            found = connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            ).fetchall()
        return {name for (name,) in found}

    assert not any(name.startswith("rebuild_") for name in indexes())
    await rebuild(store, tables, lambda reading: None)

    assert {f"projection_{name}" for name in INDEXES} <= indexes()
    assert not any(name.startswith("rebuild_") for name in indexes())
    live = tables.storage()
    await live.open()
    try:
        assert await live.ids_needing_engine("workflow") == [1, 2, 3, 4, 5]
        assert await live.load_checkpoint() == await store.head_position()
    finally:
        await live.close()


# read_for_folding (a rebuild's reads) ---------------------------------------------------------


@pytest.mark.anyio
async def test_reads_for_folding_carry_what_read_all_gives_of_each_event(
    store: SQLiteEventStore, db_path: Path
) -> None:
    """Every page, on the open store and on one opened afresh (whose codec must load the type
    names and the payloads' dictionary the rows refer to): the same positions, streams,
    versions, types, payloads and schema versions as read_all."""
    await fill(store, 6)  # past learn_after (20): the payloads after it are deflated
    await dictionary_learned(store)
    await fill_more(store, 6, 30)
    reopened = SQLiteEventStore(str(db_path))
    await reopened.open()
    try:
        for reader in (store, reopened):
            for after, limit in ((0, 1000), (7, 13), (149, 10)):
                whole = await store.read_all(after, limit)
                light = await reader.read_for_folding(after, limit)
                assert [
                    (e.position, e.stream_id, e.version, e.type, e.data, e.schema_version)
                    for e in light
                ] == [
                    (e.position, e.stream_id, e.version, e.type, e.data, e.schema_version)
                    for e in whole
                ]
    finally:
        await reopened.close()
    _, rows = stored_rows(db_path)
    assert any(isinstance(row[4], bytes) for row in rows), "no payload was deflated"
