"""What only the PostgreSQL backend promises: the database refuses changes to the log and its
checkpoints, the schema is versioned and kept apart, commits of other processes wake a waiter,
appends and swaps wait for one another, and an unreachable server is a sentence, not a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio
import asyncpg
import msgspec
import pytest

from orchestrator.backend import Backend, make_backend
from orchestrator.eventstore import postgres as postgres_store
from orchestrator.eventstore.anchors import make_anchor
from orchestrator.eventstore.base import NewEvent, RecordedEvent
from orchestrator.eventstore.chain import GENESIS, event_hash
from orchestrator.eventstore.errors import InvalidEvent, SchemaTooNew, StoreUnavailable
from orchestrator.eventstore.keys import IdempotencyClaim
from orchestrator.eventstore.postgres import PostgresEventStore
from orchestrator.eventstore.postgres_anchors import ONLY_COPY
from orchestrator.eventstore.postgres_schema import SCHEMA_VERSION
from orchestrator.settings import Database, parse_database
from tests.contract.conftest import connect_to_schema, postgres_url
from tests.contract.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

PROMPT = 5.0
T = TypeVar("T")


def new_event(n: int) -> NewEvent:
    """A small event saying `n`."""
    return NewEvent(type="Happened", data=msgspec.json.encode({"n": n}), metadata={"n": n})


@pytest.fixture
def database(tmp_path: Path) -> Database:
    """A fresh schema of TEST_DATABASE_URL's database (dropped after the test)."""
    return parse_database(postgres_url(tmp_path), pool_size=4)


@pytest.fixture
async def backend(database: Database) -> AsyncIterator[Backend]:
    """The backend on that schema, its store open (closed after the test)."""
    opened = make_backend(database)
    await opened.store.open()
    try:
        yield opened
    finally:
        await opened.store.close()


@pytest.fixture
async def raw(database: Database) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the schema, bypassing the backend."""
    conn = await connect_to_schema(database)
    try:
        yield conn
    finally:
        await conn.close()


# Append-only, enforced by the database -----------------------------------------------------------

REFUSED = {
    "update-one": "UPDATE {table} SET hash = 'x' WHERE position = 1",
    "update-none": "UPDATE {table} SET hash = 'x' WHERE false",
    "delete-one": "DELETE FROM {table} WHERE position = 1",
    "delete-all": "DELETE FROM {table}",
    "truncate": "TRUNCATE {table}",
    "truncate-cascade": "TRUNCATE {table} CASCADE",
}


@pytest.mark.parametrize("statement", REFUSED.values(), ids=REFUSED.keys())
@pytest.mark.parametrize("table", ["events", "anchors"])
async def test_the_database_refuses_to_change_or_remove_a_recorded_row(
    backend: Backend, raw: asyncpg.Connection, table: str, statement: str
) -> None:
    await backend.store.append("workflow-1", 0, [new_event(1), new_event(2)])
    await backend.anchors.open()
    await backend.anchors.append(make_anchor(2, "f" * 64, ""))
    before = await raw.fetch(f"SELECT * FROM {table} ORDER BY position")

    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await raw.execute(statement.format(table=table))

    assert await raw.fetch(f"SELECT * FROM {table} ORDER BY position") == before


async def test_an_upsert_over_a_recorded_event_is_refused(
    backend: Backend, raw: asyncpg.Connection
) -> None:
    await backend.store.append("workflow-1", 0, [new_event(1)])

    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await raw.execute(
            "INSERT INTO events SELECT * FROM events WHERE position = 1 "
            "ON CONFLICT (position) DO UPDATE SET type = 'Forged'"
        )

    [event] = await backend.store.read_all()
    assert event.type == "Happened"


async def test_checkpoints_say_they_are_the_only_copy(backend: Backend) -> None:
    await backend.anchors.open()
    assert (await backend.anchors.read()).notes == []

    await backend.anchors.append(make_anchor(1, "a" * 64, ""))
    await backend.anchors.append(make_anchor(2, "b" * 64, ""))

    found = await backend.anchors.read()
    assert [(a.position, a.hash[0]) for a in found.sources[0][1]] == [(1, "a"), (2, "b")]
    assert found.notes == [ONLY_COPY]
    last = await backend.anchors.last()
    assert last is not None and last.position == 2


# The schema -------------------------------------------------------------------------------------


async def test_the_schema_version_is_recorded_and_a_newer_one_refused(
    database: Database, raw: asyncpg.Connection
) -> None:
    store = make_backend(database).store
    await store.open()
    await store.close()
    assert await raw.fetchval("SELECT version FROM schema_version") == SCHEMA_VERSION

    await raw.execute("UPDATE schema_version SET version = $1", SCHEMA_VERSION + 1)

    with pytest.raises(SchemaTooNew, match=f"event schema {SCHEMA_VERSION + 1}"):
        await make_backend(database).store.open()


async def test_a_schema_holding_someone_elses_events_table_is_refused(
    database: Database, raw: asyncpg.Connection
) -> None:
    await raw.execute(f"CREATE SCHEMA {database.schema}")
    await raw.execute("CREATE TABLE events (id INT)")

    with pytest.raises(StoreUnavailable, match="not an orchestrator log"):
        await make_backend(database).store.open()

    assert await raw.fetchval("SELECT count(*) FROM events") == 0


async def test_keys_and_events_survive_a_restart(database: Database) -> None:
    claim = IdempotencyClaim(key="k", request_hash=bytes(range(32)), created_at=5.0)
    first = make_backend(database).store
    await first.open()
    try:
        await first.append("workflow-1", 0, [new_event(1)], idempotency=claim)
        await first.save_idempotent_answer("k", claim.request_hash, 201, b"{}")
    finally:
        await first.close()

    second = make_backend(database).store
    await second.open()
    try:
        record = await second.read_idempotency("k")
        assert [e.version for e in await second.read_stream("workflow-1")] == [1]
        assert await second.head_position() == 1
    finally:
        await second.close()
    assert record is not None and (record.position, record.status, record.body) == (1, 201, b"{}")


async def test_a_nul_character_is_refused_alone(backend: Backend) -> None:
    store = backend.store
    with anyio.fail_after(PROMPT):
        good, bad = await asyncio.gather(
            store.append("workflow-1", 0, [new_event(1)]),
            store.append("workflow-2", 0, [NewEvent(type="Odd", data=b'"\x00"')]),
            return_exceptions=True,
        )

    assert isinstance(bad, InvalidEvent), bad
    assert not isinstance(good, BaseException)
    assert [e.stream_id for e in await store.read_all()] == ["workflow-1"]


async def test_an_imported_event_the_database_cannot_hold_is_refused_as_invalid(
    backend: Backend,
) -> None:
    unhashed = RecordedEvent(
        position=1,
        stream_id="workflow-1",
        version=1,
        type="Odd",
        data=b'"\x00"',
        metadata={},
        recorded_at=datetime.now(UTC),
    )
    event = msgspec.structs.replace(unhashed, hash=event_hash(GENESIS, **unhashed.stored_fields()))

    with pytest.raises(InvalidEvent):
        await backend.store.import_events([event])

    assert await backend.store.read_all() == []


# Several processes on one log --------------------------------------------------------------------


async def test_another_processs_commit_wakes_a_waiter_at_once(database: Database) -> None:
    writer, waiter = make_backend(database).store, make_backend(database).store
    await writer.open()
    await waiter.open()
    try:
        waiting = asyncio.create_task(waiter.wait_for_events(0, timeout=30.0))
        await anyio.wait_all_tasks_blocked()
        started = time.monotonic()
        await writer.append("workflow-1", 0, [new_event(1)])
        with anyio.fail_after(PROMPT):
            assert await waiting is True
        assert time.monotonic() - started < 2.0  # NOTIFY, not the 30 s timeout
    finally:
        await writer.close()
        await waiter.close()


async def test_a_waiter_whose_listening_connection_died_still_wakes_by_polling(
    database: Database, raw: asyncpg.Connection
) -> None:
    writer, waiter = make_backend(database).store, make_backend(database).store
    await writer.open()
    await waiter.open()
    try:
        assert isinstance(waiter, PostgresEventStore)
        pids = await raw.fetch(
            "SELECT pid FROM pg_stat_activity WHERE query = 'LISTEN ' || quote_ident($1)",
            waiter.db.channel,
        )
        assert pids, "the waiter is not listening"
        for (pid,) in pids:
            await raw.execute("SELECT pg_terminate_backend($1)", pid)
        waiting = asyncio.create_task(waiter.wait_for_events(0, timeout=30.0))
        await writer.append("workflow-1", 0, [new_event(1)])
        with anyio.fail_after(PROMPT):
            assert await waiting is True
    finally:
        await writer.close()
        await waiter.close()


async def test_appends_and_a_swap_wait_while_another_holds_the_append_lock(
    backend: Backend, raw: asyncpg.Connection
) -> None:
    store = backend.store
    assert isinstance(store, PostgresEventStore)
    await store.append("workflow-1", 0, [new_event(1)])
    scratch = backend.tables.storage("rebuild_")
    await scratch.open()

    async def while_locked(start: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """What `start()` does, begun while another connection holds the append lock: it
        finishes only after the lock is released."""
        async with raw.transaction():
            await raw.execute("SELECT pg_advisory_xact_lock($1)", store.db.append_lock_key)
            work = asyncio.create_task(start())
            await asyncio.sleep(0.3)
            assert not work.done()
        with anyio.fail_after(PROMPT):
            return await work

    appended = await while_locked(lambda: store.append("workflow-1", 1, [new_event(2)]))
    swapped = await while_locked(lambda: backend.tables.swap_in("rebuild_", 2))

    assert appended.position == 2
    assert swapped is True
    await scratch.close()


# An unreachable server ---------------------------------------------------------------------------


async def test_an_unreachable_server_fails_open_with_store_unavailable(tmp_path: Path) -> None:
    database = parse_database("postgresql://postgres@127.0.0.1:1/test")

    with pytest.raises(StoreUnavailable, match="cannot connect to PostgreSQL"):
        await make_backend(database).store.open()


async def test_health_names_a_server_that_went_away_and_recovers_with_it(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_store, "_PROBE_INTERVAL", 0.0)
    assert database.url is not None
    async with TcpProxy.to_url(database.url) as proxy:
        through = Database(backend="postgres", url=proxy.url, schema=database.schema, pool_size=2)
        store = make_backend(through).store
        await store.open()
        try:
            assert await store.health_problem() is None

            await proxy.cut()
            problem = await store.health_problem()
            with pytest.raises(StoreUnavailable):
                await store.append("workflow-1", 0, [new_event(1)])

            await proxy.resume()
            with anyio.fail_after(PROMPT):
                while await store.health_problem() is not None:
                    await asyncio.sleep(0.05)
            result = await store.append("workflow-1", 0, [new_event(1)])
        finally:
            with contextlib.suppress(StoreUnavailable):
                await store.close()

    assert problem is not None and "cannot be written" in problem, problem
    assert result.position == 1
