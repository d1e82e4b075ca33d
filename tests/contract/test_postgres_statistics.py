"""A PostgreSQL log's young tables are analyzed as they grow (eventstore/postgres_statistics.py),
so that statements planned while a table held a few rows are planned anew with the statistics
of a bigger one, rather than scanning every row until autovacuum comes round."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from orchestrator.eventstore.base import NewEvent, StreamAppend
from orchestrator.eventstore.postgres import PostgresEventStore
from orchestrator.eventstore.postgres_statistics import FIRST, GROWTH, GrowingTables
from orchestrator.projections.postgres import PostgresProjectionStorage
from orchestrator.settings import parse_database
from tests.contract.conftest import connect_to_schema, make_store, postgres_url
from tests.waiting import wait_for_async

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

#: Seconds an ANALYZE in the background may take in these tests.
DEADLINE = 10.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[PostgresEventStore]:
    made = make_store("postgres", tmp_path)
    assert isinstance(made, PostgresEventStore)
    await made.open()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def conn(tmp_path: Path) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect_to_schema(parse_database(postgres_url(tmp_path)))
    try:
        yield connection
    finally:
        await connection.close()


async def analyzed(conn: asyncpg.Connection, table: str) -> int:
    """How many times `table` was analyzed by hand (autovacuum's are counted apart)."""
    found = await conn.fetchval(
        "SELECT analyze_count FROM pg_stat_user_tables "
        "WHERE schemaname = current_schema() AND relname = $1",
        table,
    )
    return int(found or 0)


async def analyzed_becomes(conn: asyncpg.Connection, table: str, count: int) -> bool:
    """True once `table` was analyzed `count` times (AssertionError after DEADLINE)."""
    await wait_for_async(
        lambda: analyzed(conn, table),
        lambda found: found >= count,
        what=f"{table} analyzed {count} times",
        timeout=DEADLINE,
        interval=0.02,
    )
    return True


async def test_a_table_is_analyzed_each_time_it_has_grown_fourfold(
    store: PostgresEventStore, conn: asyncpg.Connection
) -> None:
    growing = GrowingTables(store.db, ("events",))
    growing.start_at(0)
    before = await analyzed(conn, "events")
    growing.grew_to(FIRST - 1)
    assert not growing.analyzing

    growing.grew_to(FIRST)
    assert growing.analyzing
    assert await analyzed_becomes(conn, "events", before + 1)
    assert await stopped_analyzing(growing)
    growing.grew_to(FIRST * GROWTH - 1)  # not fourfold yet
    assert not growing.analyzing
    growing.grew_to(FIRST * GROWTH)
    assert growing.analyzing
    assert await analyzed_becomes(conn, "events", before + 2)
    await growing.stop()
    growing.grew_to(FIRST * GROWTH**3)  # stopped: the store closes
    assert not growing.analyzing


async def test_a_store_opened_on_a_big_log_waits_for_it_to_grow_fourfold(
    store: PostgresEventStore,
) -> None:
    growing = GrowingTables(store.db, ("events",))
    growing.start_at(50_000)
    growing.grew_to(150_000)
    assert not growing.analyzing
    growing.grew_to(200_000)
    assert growing.analyzing
    await growing.stop()


async def test_the_store_analyzes_its_log_once_it_passes_the_first_threshold(
    store: PostgresEventStore, conn: asyncpg.Connection
) -> None:
    event = NewEvent(type="Noted", data=b'{"n":1}', metadata={"actor": "test"})
    before = await analyzed(conn, "events")
    await store.append_streams(
        [
            StreamAppend(stream_id=f"more-{n}", expected_version=0, events=[event])
            for n in range(FIRST)
        ]
    )
    assert await analyzed_becomes(conn, "events", before + 1)


async def stopped_analyzing(growing: GrowingTables) -> bool:
    """True once no ANALYZE of `growing` is under way (AssertionError after DEADLINE)."""

    async def analyzing() -> bool:
        return growing.analyzing

    await wait_for_async(
        analyzing, lambda busy: not busy, what="the ANALYZE to end", timeout=DEADLINE, interval=0.01
    )
    return True


async def test_a_rebuilds_rows_are_analyzed_as_it_fills_them_and_none_is_left_running(
    store: PostgresEventStore, conn: asyncpg.Connection
) -> None:
    """A rebuild's tables grow from empty in one go: its lookups of rows were planned for an
    empty table (a scan of every row) until the swap, and the rebuild slowed fourfold over
    1,000,000 events. Each save past a threshold now waits for its ANALYZE: none is running
    when the rebuild goes on to its swap."""
    scratch = PostgresProjectionStorage(store.db, prefix="rebuild_")
    await scratch.open()
    try:
        growing = scratch._growing
        saved = 0
        for position in (FIRST - 1, FIRST, FIRST * GROWTH - 1, FIRST * GROWTH):
            await scratch.save([], {}, position, saved, 0)
            saved = position
            assert not growing.analyzing  # each one awaited by the save past its threshold
        assert await analyzed_becomes(conn, "rebuild_rows", 2)
    finally:
        await scratch.close()
