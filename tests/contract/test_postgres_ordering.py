"""Global order without gaps on PostgreSQL, proven with several processes' worth of writers.

Each writer is a store of its own with its own pool (as separate server processes would be), all
on one schema, while a reader tails `read_all(after)` the way the projector does. The advisory
lock every append takes (postgres_connection.LOCK_APPENDS) is what keeps the reader from ever
seeing a position before a lower one; the second test takes the lock away and watches the log's
own defences catch the collisions, and the third shows what a sequence would have done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import asyncpg
import msgspec
import pytest

from orchestrator.eventstore import postgres_connection
from orchestrator.eventstore.base import NewEvent, RecordedEvent
from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.eventstore.postgres import PostgresEventStore
from orchestrator.eventstore.postgres_connection import PostgresDatabase
from orchestrator.history.verify import verify
from orchestrator.settings import parse_database
from tests.contract.conftest import postgres_url

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

WRITERS = 4
APPENDS = 200  # per writer
STREAMS = 8  # per writer, appending concurrently, so each writer's group commit has batches


def new_event(n: int) -> NewEvent:
    """A small event saying `n`."""
    return NewEvent(type="Happened", data=msgspec.json.encode({"n": n}), metadata={"n": n})


def store_on(url: str) -> PostgresEventStore:
    """A store with a pool of its own on the schema of `url`: one process's worth."""
    database = parse_database(url, pool_size=4)
    assert database.url is not None and database.schema is not None
    return PostgresEventStore(PostgresDatabase(database.url, database.schema, database.pool_size))


@pytest.fixture
async def stores(
    tmp_path: Path,
) -> AsyncIterator[tuple[list[PostgresEventStore], PostgresEventStore]]:
    """WRITERS writing stores and one reading store, all open on one fresh schema."""
    url = postgres_url(tmp_path)
    writers = [store_on(url) for _ in range(WRITERS)]
    reader = store_on(url)
    async with contextlib.AsyncExitStack() as stack:
        # All at once: creating the schema and tables is serialised, not a race.
        everyone = [*writers, reader]
        await asyncio.gather(*(store.open() for store in everyone))
        for store in everyone:
            stack.push_async_callback(store.close)
        yield writers, reader


async def tail_while_writing(
    writers: list[PostgresEventStore], reader: PostgresEventStore
) -> tuple[list[RecordedEvent], list[BaseException]]:
    """Every writer appends APPENDS events over STREAMS streams while `reader` tails the log.

    What the reader saw, in the order it saw it, and the appends that failed.
    """
    seen: list[RecordedEvent] = []
    failures: list[BaseException] = []
    writing = True

    async def tail() -> None:
        after = 0
        while True:
            page = await reader.read_all(after, limit=37)
            if page:
                seen.extend(page)
                after = page[-1].position
            elif not writing and after >= await reader.head_position():
                return
            else:
                await reader.wait_for_events(after, timeout=0.2)

    async def stream(store: PostgresEventStore, name: str) -> None:
        version = 0
        for n in range(APPENDS // STREAMS):
            try:
                version = (await store.append(name, version, [new_event(n)])).version
            except StoreUnavailable as exc:
                failures.append(exc)
                return

    async def write() -> None:
        nonlocal writing
        try:
            await asyncio.gather(
                *(
                    stream(store, f"writer-{w}-stream-{s}")
                    for w, store in enumerate(writers)
                    for s in range(STREAMS)
                )
            )
        finally:
            writing = False

    with anyio.fail_after(120):
        await asyncio.gather(tail(), write())
    return seen, failures


async def test_appends_from_several_processes_reach_a_tailing_reader_once_each_in_order(
    stores: tuple[list[PostgresEventStore], PostgresEventStore],
) -> None:
    writers, reader = stores

    seen, failures = await tail_while_writing(writers, reader)

    total = WRITERS * APPENDS
    assert failures == []
    # Every position exactly once, in order: the reader never moved past one committed later.
    assert [e.position for e in seen] == list(range(1, total + 1))
    assert seen == await reader.read_all(0, limit=total + 1)
    report = await verify(reader)
    assert report.ok, report.violations
    assert report.events == total
    in_parts = await verify(reader, processes=3)  # each stream whole in one of three processes
    assert in_parts.ok, in_parts.violations
    assert (in_parts.events, in_parts.streams, in_parts.processes) == (total, report.streams, 3)


async def test_without_the_append_lock_concurrent_writers_collide_and_are_caught(
    stores: tuple[list[PostgresEventStore], PostgresEventStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The lock statement becomes a no-op: each writer computes max(position) + 1 unserialised.
    monkeypatch.setattr(postgres_connection, "LOCK_APPENDS", "SELECT $1::bigint")
    writers, reader = stores

    seen, failures = await tail_while_writing(writers, reader)

    duplicates = [
        exc for exc in failures if isinstance(exc.__cause__, asyncpg.UniqueViolationError)
    ]
    positions = [e.position for e in seen]
    report = await verify(reader)
    # Writers took the same positions: what keeps the log whole now is only the primary key
    # refusing the second one, which fails the whole batch of appends that lost the race.
    assert duplicates, "no collision without the lock: the test did not exercise concurrency"
    assert positions == list(range(1, len(positions) + 1))
    assert report.ok, report.violations
    assert len(seen) < WRITERS * APPENDS


async def test_a_sequence_would_let_a_tailing_reader_skip_an_event_forever(tmp_path: Path) -> None:
    """Why positions are not taken from a sequence (the design the lock replaces)."""
    url = parse_database(postgres_url(tmp_path)).url
    schema = parse_database(postgres_url(tmp_path)).schema
    assert url is not None and schema is not None
    first, second, reader = [
        await asyncpg.connect(url, server_settings={"search_path": schema}) for _ in range(3)
    ]
    try:
        await reader.execute(f"CREATE SCHEMA {schema}")
        await reader.execute("CREATE TABLE log (position BIGSERIAL PRIMARY KEY, n INT)")
        early, late = first.transaction(), second.transaction()
        await early.start()
        await late.start()
        assert await first.fetchval("INSERT INTO log (n) VALUES (1) RETURNING position") == 1
        assert await second.fetchval("INSERT INTO log (n) VALUES (2) RETURNING position") == 2
        await late.commit()  # position 2 commits while 1 is still in flight

        cursor = await reader.fetchval("SELECT max(position) FROM log WHERE position > 0")
        await early.commit()
        missed = await reader.fetch("SELECT position FROM log WHERE position > $1", cursor)

        assert cursor == 2
        assert missed == []  # position 1 is committed now, behind the reader: skipped for good
        assert await reader.fetchval("SELECT count(*) FROM log") == 2
    finally:
        for conn in (first, second, reader):
            await conn.close()
