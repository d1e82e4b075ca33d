"""The PostgreSQL log's compact rows (event schema 4, eventstore/postgres_codec.py): what is stored
is smaller, and what is read back is exactly what was appended, chained as before, whichever form
a row is in, whichever process wrote it, and after a log of schema 3 is migrated; an edit of a
compact row is still caught by `verify`."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest

from orchestrator.eventstore.base import NewEvent, RecordedEvent, StreamAppend
from orchestrator.eventstore.chain import GENESIS, event_hash
from orchestrator.eventstore.compact import learned_dictionary
from orchestrator.eventstore.errors import InvalidEvent
from orchestrator.eventstore.postgres import PostgresEventStore
from orchestrator.eventstore.postgres_connection import PostgresDatabase
from orchestrator.eventstore.postgres_schema import SCHEMA_VERSION
from orchestrator.history.verify import Report, _chain_row, verify
from orchestrator.settings import Database, parse_database
from tests.contract.compact_events import event, payload
from tests.contract.conftest import connect_to_schema, postgres_url
from tests.contract.postgres_schema_3 import insert_as_schema_3, make_schema_3

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

#: The stores learn their payloads' dictionary after this many events in these tests.
LEARN_AFTER = 30
#: Never, within a test.
NEVER = 10**9
#: The stored form of every row: which column of each pair holds it.
FORMS = (
    "SELECT position, type_id IS NOT NULL, packed IS NOT NULL, metadata_id IS NOT NULL, "
    "recorded_us IS NOT NULL, digest IS NOT NULL, "
    "num_nulls(type, data, metadata, recorded_at, hash) FROM events ORDER BY position"
)


def texts(events: Sequence[RecordedEvent]) -> list[tuple[dict[str, Any], str]]:
    """Each event's fields as the chain hashes them, and its hash: what must not change."""
    return [(e.stored_fields(), e.hash) for e in events]


def chained(events: Sequence[RecordedEvent], previous: str = GENESIS) -> list[RecordedEvent]:
    """`events` with the hashes of a chain starting after `previous`."""
    found: list[RecordedEvent] = []
    for unhashed in events:
        previous = event_hash(previous, **unhashed.stored_fields())
        found.append(msgspec.structs.replace(unhashed, hash=previous))
    return found


def recorded(
    position: int, data: bytes, *, at: datetime | None = None, **fields: Any
) -> RecordedEvent:
    """An event at `position` (version `position` of stream `log-1` unless told), unhashed."""
    return RecordedEvent(
        position=position,
        stream_id=fields.pop("stream_id", "log-1"),
        version=fields.pop("version", position),
        type=fields.pop("type", "Happened"),
        data=data,
        metadata=fields.pop("metadata", {"actor": "import"}),
        recorded_at=at
        or datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC) + timedelta(seconds=position),
        schema_version=fields.pop("schema_version", 1),
    )


@pytest.fixture
def database(tmp_path: Path) -> Database:
    """A fresh schema of TEST_DATABASE_URL's database (dropped after the test)."""
    return parse_database(postgres_url(tmp_path), pool_size=4)


def new_store(database: Database, learn_after: int = LEARN_AFTER) -> PostgresEventStore:
    """A store on the test's schema (unopened), learning its dictionary after `learn_after`."""
    assert database.url is not None and database.schema is not None
    db = PostgresDatabase(database.url, database.schema, database.pool_size)
    return PostgresEventStore(db, learn_after=learn_after)


@pytest.fixture
async def store(database: Database) -> AsyncIterator[PostgresEventStore]:
    """An open store that learns a dictionary early."""
    opened = new_store(database)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def raw(database: Database, store: PostgresEventStore) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the schema (made by `store`), bypassing the store."""
    conn = await connect_to_schema(database)
    try:
        yield conn
    finally:
        await conn.close()


async def learned(store: PostgresEventStore, deadline: float = 10.0) -> None:
    """Wait until the store has a dictionary, stored or waiting for the next batch to store."""
    give_up = time.monotonic() + deadline
    while store._codec.dictionary is None and store._dictionary.learned is None:
        assert time.monotonic() < give_up, "no dictionary learned"
        await asyncio.sleep(0.005)


async def fill(store: PostgresEventStore, count: int, start: int = 0) -> list[NewEvent]:
    """Append `count` events of three types to three streams, one append each; the events.
    Once the log is long enough to learn a dictionary from, the rest wait for it to be learned
    (the next append stores it)."""
    appended: list[NewEvent] = []
    for n in range(start, start + count):
        stream = f"log-{n % 3 + 1}"
        new = event(("StepStarted", "StepSucceeded", "WorkflowTransitioned")[n % 3], n)
        current = len(await store.read_stream(stream))
        await store.append(stream, current, [new])
        appended.append(new)
        if await store.head_position() == LEARN_AFTER + 1:
            await learned(store)
    return appended


async def verified(store: PostgresEventStore) -> Report:
    """What `verify` finds, after checking that the store's chain rows are exactly those built
    from its events (what verify read before stores had `read_chain`)."""
    head = await store.head_position()
    events = await store.read_all(0, head + 1)
    assert await store.read_chain(0, head + 1) == [_chain_row(e) for e in events]
    return await verify(store)


# Reading back what was appended -----------------------------------------------------------------


async def test_events_read_back_exactly_as_appended_before_and_after_the_dictionary(
    store: PostgresEventStore, raw: asyncpg.Connection
) -> None:
    appended = await fill(store, 3 * LEARN_AFTER)

    log = await store.read_all(0, 1000)

    assert [(e.type, e.data, e.metadata, e.schema_version) for e in log] == [
        (n.type, n.data, n.metadata, n.schema_version) for n in appended
    ]
    assert (await verified(store)).ok
    forms = await raw.fetch(FORMS)
    # Every row compact but its payload, which is deflated once the dictionary is known.
    assert all(row[1] and row[3] and row[4] and row[5] for row in forms)
    assert all(row[6] == (5 if row[2] else 4) for row in forms)  # the other text columns empty
    assert not forms[0][2]  # before the dictionary: text
    packed = await raw.fetch("SELECT position, packed FROM events WHERE packed IS NOT NULL")
    assert len(packed) >= LEARN_AFTER  # after it: deflated, and much smaller
    assert all(len(p) < len(appended[n - 1].data) / 2 for n, p in packed)
    assert await raw.fetchval("SELECT count(*) FROM event_dictionaries") == 1
    assert await raw.fetchval("SELECT count(*) FROM event_types") == 3


async def test_odd_values_round_trip_in_whichever_form_gives_them_back(
    store: PostgresEventStore, database: Database, raw: asyncpg.Connection
) -> None:
    await fill(store, LEARN_AFTER + 3)  # a dictionary, so long payloads are deflated
    head = await store.head_position()
    plus_two = timezone(timedelta(hours=2))
    unhashed = [
        # Too short to shrink: stored as text.
        recorded(1, b'{"n":1}'),
        # JSON as written, spaces and all, and text in several scripts.
        recorded(2, '{ "note" : "é ✓ 🎉 日本語 ﷽", "n" : 2 }'.encode(), type="Événement✓"),
        # A time with an offset: hashed as written, so kept as text.
        recorded(3, payload("Odd", 3), at=datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=plus_two)),
        # A whole second (no fraction in its text) and a time before 1970.
        recorded(4, payload("Odd", 4), at=datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)),
        recorded(5, payload("Odd", 5), at=datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=UTC)),
        # Metadata never seen before, nested and unicode.
        recorded(6, payload("Odd", 6), metadata={"who": "ünï 🎉", "deep": {"a": [1, 2.5]}}),
        recorded(7, b"[]", schema_version=7),
        # Long enough to be deflated, too random to shrink: stored as text.
        recorded(
            8,
            msgspec.json.encode(
                {"r": "".join(map(chr, random.Random(8).choices(range(33, 127), k=60)))}
            ),
        ),
    ]
    odd = chained(
        [msgspec.structs.replace(e, position=head + e.position, stream_id="odd") for e in unhashed],
        (await store.read_all(head - 1, 1))[0].hash,
    )

    second = new_store(database)
    await second.open()
    try:
        await store.import_events(odd)  # a type and metadata `second` has not seen
        theirs = await second.read_all(head, 100)
    finally:
        await second.close()

    mine = await store.read_all(head, 100)
    assert texts(mine) == texts(odd)
    assert texts(theirs) == texts(odd)
    assert (await verified(store)).ok
    forms = {row[0] - head: row for row in await raw.fetch(FORMS) if row[0] > head}
    assert not forms[1][2] and not forms[7][2]  # short payloads as text
    assert forms[4][2] and forms[6][2]  # payloads like the log's deflated
    assert len(odd[7].data) > 60 and not forms[8][2]
    assert not forms[3][4]  # the time at +02:00 as text
    assert forms[4][4] and forms[5][4]  # UTC times as microseconds
    assert (
        await raw.fetchval("SELECT recorded_at FROM events WHERE position = $1", head + 3)
        == odd[2].recorded_at.isoformat()
    )


async def test_append_streams_alone_and_an_import_store_deflated_rows_that_verify(
    store: PostgresEventStore, tmp_path: Path
) -> None:
    """A log written by append_streams alone (an import of the original's rows, the benchmarks'
    fills) learns its dictionary too, and an import into an empty log learns one from the
    events it brings, in its own transaction: neither is left stored as text."""

    async def append_streams(first: int, count: int) -> None:
        await store.append_streams(
            [
                StreamAppend(
                    stream_id=f"batch-{n}",
                    expected_version=0,
                    events=[event(kind, n) for kind in ("StepStarted", "StepSucceeded")],
                )
                for n in range(first, first + count)
            ]
        )

    await append_streams(1, LEARN_AFTER)  # 2 * LEARN_AFTER events: learning starts
    await learned(store)
    await append_streams(1000, 5)  # stores the dictionary
    await append_streams(2000, 5)  # deflated with it
    log = await store.read_all(0, 10_000)
    copy = new_store(parse_database(postgres_url(tmp_path / "copy"), pool_size=2))
    await copy.open()
    try:
        await copy.import_events(log)
        copied = await copy.read_all(0, 10_000)
        copy_report = await verified(copy)
        packed = await copy.db.fetch(
            "a test", "SELECT count(*) FROM events WHERE packed IS NOT NULL"
        )
    finally:
        await copy.close()
    mine = await store.db.fetch("a test", "SELECT packed IS NOT NULL FROM events ORDER BY position")

    assert [row[0] for row in mine[-10:]] == [True] * 10
    assert (await verified(store)).ok
    assert copy_report.ok and copy_report.events == len(log) == 2 * LEARN_AFTER + 20
    assert texts(copied) == texts(log)
    assert packed[0][0] == len(log)


# Several processes on one log --------------------------------------------------------------------


async def test_a_second_store_reads_types_and_metadata_it_has_never_seen(
    store: PostgresEventStore, database: Database
) -> None:
    await fill(store, 6)
    other = new_store(database, learn_after=NEVER)
    await other.open()
    try:
        # Written after `other` opened, with a type and metadata it has never seen, and the
        # other way round: each reads the other's new ids.
        await store.append("job-1", 0, [event("TaskCreated", 7, actor="api ✓")])
        await other.append("job-2", 0, [event("TaskNoticed", 8, actor="cli")])
        theirs = await other.read_all(0, 1000)
        mine = await store.read_all(0, 1000)
        by_type = await other.read_all(0, 1000, event_type="TaskCreated")
        noticed = await store.read_all(0, 1000, event_type="TaskNoticed")
        stream = await store.read_stream("job-2")
        folded = await other.read_for_folding(0, 1000)
        other_report = await verified(other)
    finally:
        await other.close()

    assert texts(mine) == texts(theirs)
    assert [e.stream_id for e in by_type] == ["job-1"]
    assert [e.stream_id for e in noticed] == ["job-2"]
    assert [e.metadata["actor"] for e in stream] == ["cli"]
    assert [(f.type, f.data) for f in folded] == [(e.type, e.data) for e in mine]
    assert other_report.ok and (await verified(store)).ok


async def test_a_dictionary_learned_by_one_store_is_read_and_then_used_by_another(
    store: PostgresEventStore, database: Database, raw: asyncpg.Connection
) -> None:
    other = new_store(database, learn_after=NEVER)  # opened before there is a dictionary
    await other.open()
    try:
        appended = await fill(store, 2 * LEARN_AFTER)
        assert store._codec.dictionary is not None and other._codec.dictionary is None
        await other.append("log-9", 0, [event("StepStarted", 1)])  # as text: none known
        theirs = await other.read_all(0, 1000)  # meets packed rows: loads the dictionary
        await other.append("log-9", 1, [event("StepStarted", 2)])  # deflated with it
        last = await store.read_all(len(appended), 10)
    finally:
        await other.close()

    assert [e.data for e in theirs[: len(appended)]] == [n.data for n in appended]
    assert [e.data for e in last] == [event("StepStarted", n).data for n in (1, 2)]
    packed = await raw.fetch(
        "SELECT packed IS NOT NULL FROM events WHERE stream_id = 'log-9' ORDER BY version"
    )
    assert [row[0] for row in packed] == [False, True]
    assert (await verified(store)).ok


async def test_ids_handed_out_in_a_transaction_that_rolled_back_are_never_used(
    store: PostgresEventStore, database: Database
) -> None:
    """A type and a metadata text first met by an import that fails (after their ids were
    inserted, in its transaction) are inserted again by the next append: the store must not
    have kept ids that no longer exist."""
    # Past what a BIGINT holds: refused by the INSERT, once the lookups are in.
    at = datetime(2026, 1, 1, tzinfo=UTC)
    fresh = recorded(2**63, b"{}", at=at, type="Fresh", version=1, metadata={"new": True})
    refused = chained([fresh])
    with pytest.raises(InvalidEvent):
        await store.import_events(refused)

    await store.append("log-1", 0, [NewEvent(type="Fresh", data=b"{}", metadata={"new": True})])
    other = new_store(database)
    await other.open()
    try:
        [read] = await other.read_all()
    finally:
        await other.close()

    assert (read.type, read.metadata) == ("Fresh", {"new": True})


async def test_the_first_dictionary_stored_wins_and_the_other_store_takes_it(
    store: PostgresEventStore, database: Database, raw: asyncpg.Connection
) -> None:
    other = new_store(database, learn_after=NEVER)
    await other.open()
    try:
        await fill(store, 2 * LEARN_AFTER)
        # `other` learned a dictionary of its own meanwhile; its batch finds the stored one.
        other._dictionary.learned = b"a dictionary learned elsewhere" * 4
        await other.append("log-9", 0, [event("StepStarted", 1)])
        known = other._codec.dictionary
    finally:
        await other.close()

    stored = await raw.fetch("SELECT id, dictionary FROM event_dictionaries")
    assert [(row[0], bytes(row[1])) for row in stored] == [store._codec.dictionary]
    assert known == store._codec.dictionary


async def test_appends_go_on_while_the_dictionary_is_being_learned(
    store: PostgresEventStore, raw: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Learning the dictionary (tens of milliseconds on a real log) holds no append back: with
    the learning held, appends past it commit as text; once it is let go, the next batch stores
    it and the appends after it are deflated."""
    release = threading.Event()
    learn = learned_dictionary

    def held(rows: list[Any]) -> bytes | None:
        assert release.wait(10.0)
        return learn(rows)

    monkeypatch.setattr("orchestrator.eventstore.postgres_dictionary.learned_dictionary", held)
    try:
        for n in range(LEARN_AFTER + 20):
            await store.append(f"log-{n + 1}", 0, [event("StepStarted", n)])
        assert store._codec.dictionary is None
        assert await raw.fetchval("SELECT count(*) FROM events WHERE packed IS NOT NULL") == 0
    finally:
        release.set()
    await learned(store)
    await store.append("log-1", 1, [event("StepSucceeded", 1)])
    await store.append("log-1", 2, [event("StepSucceeded", 2)])

    assert store._codec.dictionary is not None
    assert await raw.fetchval("SELECT packed IS NOT NULL FROM events ORDER BY position DESC")
    assert (await verified(store)).ok


# A log of schema 3 -------------------------------------------------------------------------------


async def schema_3_log(database: Database, count: int) -> list[RecordedEvent]:
    """A log of schema 3 in the test's schema, with `count` events as that release stored them."""
    assert database.url is not None and database.schema is not None
    await make_schema_3(database.url, database.schema)
    events = chained(
        [
            recorded(
                n,
                payload(("StepStarted", "StepSucceeded")[n % 2], n),
                stream_id=f"log-{n % 4}",
                version=n // 4 + (1 if n % 4 else 0),
                type=("StepStarted", "StepSucceeded")[n % 2],
                metadata={"actor": "engine", "n": n % 3},
                at=datetime.now(UTC) - timedelta(seconds=count - n),
            )
            for n in range(1, count + 1)
        ]
    )
    conn = await connect_to_schema(database)
    try:
        await insert_as_schema_3(conn, events)
    finally:
        await conn.close()
    return events


async def test_a_log_of_schema_3_is_read_verified_and_extended_after_the_migration(
    database: Database,
) -> None:
    old = await schema_3_log(database, 2 * LEARN_AFTER)
    store = new_store(database)
    await store.open()
    try:
        before = await store.read_all(0, 1000)
        report = await verified(store)
        # Appends after it: the dictionary is learned from the old rows' payloads.
        for n in range(1, 6):
            await store.append("log-new", n - 1, [event("StepStarted", n)])
        await learned(store)
        for n in range(6, 9):
            await store.append("log-new", n - 1, [event("StepSucceeded", n)])
        # A process of the release before, still running, appends a row of its own kind, chained
        # on what it reads as the last hash (the text column: NULL in a compact row): refused,
        # where it would have broken the chain for good.
        head = await store.head_position()
        straggler = chained(
            [recorded(head + 1, b'{"late":true}', stream_id="log-late", version=1)], "None"
        )
        conn = await connect_to_schema(database)
        try:
            with pytest.raises(asyncpg.CheckViolationError, match="events_type_by_id"):
                await insert_as_schema_3(conn, straggler)
            version = await conn.fetchval("SELECT version FROM schema_version")
            forms = await conn.fetch(FORMS)
        finally:
            await conn.close()
        after = await store.read_all(0, 1000)
        extended = await verified(store)
    finally:
        await store.close()

    assert texts(before) == texts(old)  # byte for byte
    assert report.ok and report.events == len(old)
    assert version == SCHEMA_VERSION
    assert texts(after[: len(old)]) == texts(old)
    assert len(after) == len(old) + 8
    assert extended.ok and extended.events == len(old) + 8
    # The old rows as they were, the new ones compact and, once the dictionary was stored,
    # deflated.
    as_text = [row[0] for row in forms if row[6] == 0]
    assert as_text == [*range(1, len(old) + 1)]
    new = [row for row in forms if len(old) < row[0] <= len(old) + 8]
    assert all(row[1] and row[3] and row[4] and row[5] for row in new)
    assert new[-1][2]


async def test_an_event_edited_before_the_migration_still_fails_verify_after_it(
    database: Database,
) -> None:
    await schema_3_log(database, 10)
    conn = await connect_to_schema(database)
    try:
        await conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        await conn.execute(
            "UPDATE events SET data = replace(data, 'done', 'DONE') WHERE position = 4"
        )
        await conn.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    finally:
        await conn.close()
    store = new_store(database)
    await store.open()
    try:
        report = await verified(store)
    finally:
        await store.close()

    assert [(v.position, "hash chain broken" in v.reason) for v in report.violations] == [(4, True)]


async def test_a_fresh_log_and_a_migrated_one_have_the_same_columns(
    database: Database, tmp_path: Path
) -> None:
    await schema_3_log(database, 1)
    fresh_database = parse_database(postgres_url(tmp_path / "fresh"), pool_size=2)
    columns: list[set[tuple[str, str, str, str]]] = []
    for each in (database, fresh_database):
        store = new_store(each)
        await store.open()
        try:
            rows = await store.db.fetch(
                "a test",
                "SELECT table_name, column_name, data_type, is_nullable "
                "FROM information_schema.columns WHERE table_schema = $1",
                each.schema,
            )
        finally:
            await store.close()
        columns.append({(str(a), str(b), str(c), str(d)) for a, b, c, d in rows})

    assert columns[0] == columns[1]


# Edits of compact rows --------------------------------------------------------------------------

#: Edits of the 12th event's stored row (deflated: a dictionary is known by then), by what they
#: change; and the positions whose hash no longer holds (the event after an edited hash is
#: checked against that hash, as stored).
EDITS = {
    "payload": (
        "UPDATE events SET packed = (SELECT packed FROM events WHERE position = 15) "
        "WHERE position = 12",
        [12],
    ),
    "payload-garbage": ("UPDATE events SET packed = '\\x01deadbeef' WHERE position = 12", [12]),
    "payload-as-text": ("UPDATE events SET packed = NULL, data = '{}' WHERE position = 12", [12]),
    "type": ("UPDATE events SET type_id = 3 - type_id WHERE position = 12", [12]),
    "type-unknown": ("UPDATE events SET type_id = 99 WHERE position = 12", [12]),
    "metadata": ("UPDATE events SET metadata_id = metadata_id % 10 + 1 WHERE position = 12", [12]),
    "time": ("UPDATE events SET recorded_us = recorded_us + 1 WHERE position = 12", [12]),
    "hash": ("UPDATE events SET digest = sha256(digest) WHERE position = 12", [12, 13]),
}


#: verify in this process, and in three (cli_parts.py): each part reads every row and checks its
#: streams' events, each against the stored hash of the row before it, whichever part that is in.
PROCESSES = pytest.mark.parametrize("processes", [1, 3], ids=["one-process", "three-processes"])


@pytest.mark.parametrize(("edit", "broken"), EDITS.values(), ids=EDITS.keys())
@PROCESSES
async def test_an_edited_compact_row_fails_verify_at_its_position(
    database: Database, edit: str, broken: list[int], processes: int
) -> None:
    store = new_store(database, learn_after=5)
    await store.open()
    try:
        for n in range(1, 21):
            kind = ("StepStarted", "StepSucceeded")[n % 2]
            await store.append(f"log-{n % 2}", (n - 1) // 2, [event(kind, n, actor=f"a{n % 5}")])
            if n == 6:
                await learned(store)
        async with store.db.transaction("an edit") as conn:
            assert await conn.fetchval("SELECT packed IS NOT NULL FROM events WHERE position = 12")
            await conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
            assert await conn.execute(edit) == "UPDATE 1"
            await conn.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
        report = await verify(store, processes=processes)
    finally:
        await store.close()

    assert [v.position for v in report.violations if "hash chain broken" in v.reason] == broken
    assert (report.events, report.streams, report.processes) == (20, 2, processes)


@PROCESSES
async def test_an_edited_lookup_fails_verify_for_every_event_that_refers_to_it(
    store: PostgresEventStore, database: Database, raw: asyncpg.Connection, processes: int
) -> None:
    for n in range(1, 7):
        await store.append("log-1", n - 1, [event("Step", n, actor="api" if n < 4 else "cli")])
    await raw.execute("ALTER TABLE event_metadata DISABLE TRIGGER event_metadata_append_only")
    await raw.execute(
        """UPDATE event_metadata SET metadata = replace(metadata, '"api"', '"API"')"""
    )
    fresh = new_store(database)
    await fresh.open()
    try:
        report = await verify(fresh, processes=processes)
    finally:
        await fresh.close()

    broken = [v.position for v in report.violations if "hash chain broken" in v.reason]
    assert broken == [1, 2, 3]  # the events of "api"
    assert report.processes == processes


@pytest.mark.parametrize("table", ["event_types", "event_metadata", "event_dictionaries"])
async def test_the_lookup_tables_refuse_changes(
    store: PostgresEventStore, raw: asyncpg.Connection, table: str
) -> None:
    await fill(store, LEARN_AFTER + 3)
    before = await raw.fetch(f"SELECT * FROM {table} ORDER BY id")

    for statement in (
        f"UPDATE {table} SET id = id + 100",
        f"DELETE FROM {table}",
        f"TRUNCATE {table}",
    ):
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await raw.execute(statement)

    assert before and await raw.fetch(f"SELECT * FROM {table} ORDER BY id") == before
