"""The SQLite log's compact rows (event schema 3, eventstore/sqlite_codec.py): what is stored is
smaller, and what is read back is exactly what was appended, chained as before, whichever form a
row is in and whichever process wrote it."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from orchestrator.eventstore import compact
from orchestrator.eventstore.base import NewEvent, RecordedEvent
from orchestrator.eventstore.chain import GENESIS, event_hash
from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.eventstore.sqlite_codec import (
    RowCodec,
    build_dictionary,
    learned_dictionary,
    pack_hash,
    pack_time,
    unpack_hash,
    unpack_time,
)
from orchestrator.eventstore.sqlite_schema import stored_events
from tests.contract.compact_events import event, payload

#: The store learns its payloads' dictionary after this many events in these tests.
LEARN_AFTER = 30


def raw_rows(path: Path) -> list[tuple[object, ...]]:
    """The events table's rows as stored."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(
            "SELECT position, type, data, metadata, recorded_at, hash FROM events ORDER BY position"
        ).fetchall()


def chain_holds(events: list[RecordedEvent]) -> bool:
    """Whether every event's hash is the chain's over its fields, from the genesis on."""
    previous = GENESIS
    for recorded in events:
        if event_hash(previous, **recorded.stored_fields()) != recorded.hash:
            return False
        previous = recorded.hash
    return True


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where this test's database file lives."""
    return tmp_path / "events.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SQLiteEventStore]:
    """An open store that learns a dictionary early."""
    opened = SQLiteEventStore(str(db_path), learn_after=LEARN_AFTER)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def dictionary_learned(store: SQLiteEventStore, deadline: float = 10.0) -> None:
    """Wait until the store has learned its payloads' dictionary (beside its writer, once the
    log is long enough), as a server has after its first few hundred events."""
    give_up = time.monotonic() + deadline
    while store._codec.dictionary is None:
        assert time.monotonic() < give_up, "no dictionary learned"
        await asyncio.sleep(0.005)


async def fill(store: SQLiteEventStore, count: int, start: int = 0) -> list[NewEvent]:
    """Append `count` events of three types to three streams, one append each; the events.
    Once the log is long enough to learn a dictionary from, the rest wait for it."""
    appended: list[NewEvent] = []
    versions: dict[str, int] = {}
    for n in range(start, start + count):
        stream = f"workflow-{n % 3 + 1}"
        new = event(("StepStarted", "StepSucceeded", "WorkflowTransitioned")[n % 3], n)
        current = versions.get(stream)
        if current is None:
            current = len(await store.read_stream(stream))
        await store.append(stream, current, [new])
        versions[stream] = current + 1
        appended.append(new)
        if await store.head_position() == LEARN_AFTER + 1:
            await dictionary_learned(store)
    return appended


@pytest.mark.anyio
async def test_events_read_back_exactly_as_appended_before_and_after_the_dictionary(
    store: SQLiteEventStore, db_path: Path
) -> None:
    appended = await fill(store, 3 * LEARN_AFTER)

    log = await store.read_all(0, 1000)

    assert [(e.type, e.data, e.metadata, e.schema_version) for e in log] == [
        (n.type, n.data, n.metadata, n.schema_version) for n in appended
    ]
    assert chain_holds(log)
    rows = raw_rows(db_path)
    assert all(isinstance(row[1], int) and isinstance(row[3], int) for row in rows)
    assert all(isinstance(row[4], int) and isinstance(row[5], bytes) for row in rows)
    assert isinstance(rows[0][2], str)  # before the dictionary: text
    packed = [row for row in rows if isinstance(row[2], bytes)]
    assert len(packed) >= LEARN_AFTER  # after it: deflated, and smaller
    assert all(len(row[2]) < len(appended[row[0] - 1].data) / 2 for row in packed)  # type: ignore[arg-type, operator]


@pytest.mark.anyio
async def test_a_reopened_store_and_a_second_store_on_the_file_read_the_same_log(
    store: SQLiteEventStore, db_path: Path
) -> None:
    await fill(store, 2 * LEARN_AFTER)
    other = SQLiteEventStore(str(db_path), learn_after=LEARN_AFTER)
    await other.open()
    try:
        # Written after `other` opened, with a type and metadata it has never seen.
        await store.append("task-1", 0, [event("TaskCreated", 7, actor="api")])
        await other.append("task-2", 0, [event("TaskCreated", 8, actor="cli")])
        mine, theirs = await store.read_all(0, 1000), await other.read_all(0, 1000)
        by_type = await other.read_all(0, 1000, event_type="TaskCreated")
        stream = await store.read_stream("task-2")
    finally:
        await other.close()

    assert mine == theirs
    assert chain_holds(mine)
    assert [e.stream_id for e in by_type] == ["task-1", "task-2"]
    assert [e.metadata["actor"] for e in stream] == ["cli"]
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        assert stored_events(conn) == mine


@pytest.mark.anyio
async def test_append_streams_and_an_import_store_compact_rows_that_verify(
    store: SQLiteEventStore, tmp_path: Path
) -> None:
    from orchestrator.eventstore.base import StreamAppend

    await store.append_streams(
        [
            StreamAppend(
                stream_id=f"workflow-{n}",
                expected_version=0,
                events=[event(kind, n) for kind in ("StepStarted", "StepSucceeded")],
            )
            for n in range(1, 2 * LEARN_AFTER)
        ]
    )
    await fill(store, LEARN_AFTER, start=1000)
    log = await store.read_all(0, 10_000)
    copy = SQLiteEventStore(str(tmp_path / "copy.db"), learn_after=LEARN_AFTER)
    await copy.open()
    try:
        await copy.import_events(log)
        copied = await copy.read_all(0, 10_000)
    finally:
        await copy.close()

    assert chain_holds(log)
    assert copied == log


@pytest.mark.anyio
async def test_an_imported_time_or_hash_without_a_compact_form_is_kept_as_text(
    db_path: Path,
) -> None:
    # An event recorded at +02:00: its time is hashed as it was written, so it stays text.
    moment = datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    fields = {
        "position": 1,
        "stream_id": "workflow-1",
        "version": 1,
        "type": "Happened",
        "data": '{"n":1}',
        "metadata": "{}",
        "recorded_at": moment.isoformat(),
        "schema_version": 1,
    }
    imported = RecordedEvent(
        position=1,
        stream_id="workflow-1",
        version=1,
        type="Happened",
        data=b'{"n":1}',
        metadata={},
        recorded_at=moment,
        hash=event_hash(GENESIS, **fields),  # type: ignore[arg-type]
    )
    store = SQLiteEventStore(str(db_path))
    await store.open()
    try:
        await store.import_events([imported])
        [read] = await store.read_all()
    finally:
        await store.close()

    assert read == imported
    assert raw_rows(db_path)[0][4] == moment.isoformat()


def test_the_compact_forms_give_back_the_text_that_is_hashed() -> None:
    now = datetime.now(UTC)
    for moment in (now, now.replace(microsecond=0), datetime(1969, 12, 31, 23, 59, tzinfo=UTC)):
        text = moment.isoformat()
        assert isinstance(pack_time(text), int)
        assert unpack_time(pack_time(text)).isoformat() == text
    for text in ("2026-01-01T00:00:00Z", "2026-01-01T02:00:00+02:00", "2026-01-01T00:00:00"):
        assert pack_time(text) == text  # hashed as written: kept as written
    digest = "ab" * 32
    assert unpack_hash(pack_hash(digest)) == digest and len(pack_hash(digest)) == 32
    for text in ("AB" * 32, "", "xyz"):
        assert pack_hash(text) == text


def test_a_dictionary_covers_each_kind_of_payload_and_packs_losslessly() -> None:
    samples = [("T", payload(kind, n)) for n in range(200) for kind in ("A", "B", "C")]
    dictionary = build_dictionary(reversed(samples))
    codec = RowCodec()
    codec.learn_dictionaries([(1, dictionary)])

    for kind in ("A", "B", "C"):
        assert f'"type":"{kind}"'.encode() in dictionary
    for _, raw in samples[:30]:
        packed = codec.pack_payload(raw.decode())
        assert isinstance(packed, bytes) and len(packed) < len(raw) / 2
        assert codec.payload(packed) == raw
    assert codec.pack_payload('{"n":1}') == '{"n":1}'  # too short to gain anything


def exhaustive_dictionary(samples: list[bytes]) -> bytes:
    """The greedy choice `build_dictionary` makes lazily, made by deflating every sample again
    with each longer dictionary (with compact.py's own deflater and limits): the most novel
    sample next, until the dictionary is full or no sample is novel."""

    def size(raw: bytes, dictionary: bytes) -> int:
        deflater = compact._deflater(dictionary)
        return len(deflater.compress(raw) + deflater.flush())

    candidates = list(dict.fromkeys(samples))
    dictionary = b""
    while candidates:
        sizes = [size(raw, dictionary) for raw in candidates]
        worst = max(range(len(candidates)), key=sizes.__getitem__)
        chosen = candidates.pop(worst)
        if (
            sizes[worst] < compact._MIN_PACKED
            or len(dictionary) + len(chosen) > compact.DICTIONARY_BYTES
        ):
            break
        dictionary += chosen
    return dictionary


def test_the_lazy_dictionary_packs_as_well_as_measuring_every_sample_each_round() -> None:
    """build_dictionary measures again only the samples that may be the most novel: on payloads
    like the engine's (kinds, ids, times, results of several shapes) what it picks packs them
    within 2% of what the exhaustive greedy choice does (deflate's sizes are not exactly
    monotone in the dictionary, so the two may differ in a sample or two)."""
    kinds = ("StepStarted", "StepSucceeded", "WorkflowTransitioned", "TaskQueued")
    samples = [
        payload(kind, n) + (b' "extra": "%d"' % n if n % 7 == 0 else b"")
        for n in range(300)
        for kind in kinds
    ]
    newest_first = list(reversed(samples))
    lazy = build_dictionary(("T", raw) for raw in newest_first)
    exhaustive = exhaustive_dictionary(newest_first)

    def packed_bytes(dictionary: bytes) -> int:
        codec = RowCodec()
        codec.learn_dictionaries([(1, dictionary)])
        return sum(len(codec.pack_payload(raw.decode())) for raw in samples)

    assert all(f'"type":"{kind}"'.encode() in lazy for kind in kinds)
    assert packed_bytes(lazy) <= packed_bytes(exhaustive) * 1.02
    assert packed_bytes(lazy) < sum(map(len, samples)) / 5


@pytest.mark.anyio
async def test_appends_go_on_while_the_dictionary_is_being_learned(
    store: SQLiteEventStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Learning the dictionary (tens of milliseconds on a real log) holds no append back: with
    the learning held, appends past it commit as text; once it is let go, it is stored and the
    appends after it are deflated."""
    release = threading.Event()
    learn = learned_dictionary

    def held(rows: list[Any]) -> bytes | None:
        assert release.wait(10.0)
        return learn(rows)

    monkeypatch.setattr("orchestrator.eventstore.sqlite.learned_dictionary", held)
    for n in range(LEARN_AFTER + 20):
        await store.append(f"workflow-{n + 1}", 0, [event("StepStarted", n)])
    assert store._codec.dictionary is None
    assert all(isinstance(row[2], str) for row in raw_rows(db_path))

    release.set()
    await dictionary_learned(store)
    await store.append("workflow-1", 1, [event("StepSucceeded", 1)])
    assert isinstance(raw_rows(db_path)[-1][2], bytes)
