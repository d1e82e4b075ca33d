"""The PostgreSQL backend's connection pool (postgres_pool.ConnectionPool), on a real server: it
lends each connection to one caller at a time, never more than its size, hands a connection given
back to the longest waiting caller, and lends again only connections left as they were lent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from orchestrator.eventstore import postgres_pool
from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.eventstore.postgres_connection import PostgresDatabase
from orchestrator.eventstore.postgres_pool import ConnectionPool, NoConnectionFree, PoolClosed
from orchestrator.settings import parse_database
from tests.contract.conftest import postgres_test_url, postgres_url

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]


def _url() -> str:
    url = parse_database(postgres_test_url()).url
    assert url is not None
    return url


async def _connect() -> asyncpg.Connection:
    return await asyncpg.connect(_url())


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    """A pool of at most two connections to the test database."""
    made = ConnectionPool(_connect, 2)
    await made.open()
    try:
        yield made
    finally:
        await made.close(5.0)


async def _full_with_a_waiter(
    pool: ConnectionPool,
) -> tuple[asyncpg.Connection, asyncpg.Connection, asyncio.Task[asyncpg.Connection]]:
    """Both connections of the two-connection pool lent, and a third caller waiting."""
    one, two = await pool.acquire(1.0), await pool.acquire(1.0)
    waiting = asyncio.create_task(pool.acquire(5.0))
    await asyncio.sleep(0.05)
    return one, two, waiting


async def _backend_pid(conn: asyncpg.Connection) -> int:
    pid: int = await conn.fetchval("SELECT pg_backend_pid()")
    return pid


async def test_a_connection_given_back_is_lent_again(pool: ConnectionPool) -> None:
    first = await pool.acquire(1.0)
    pid = await _backend_pid(first)
    pool.release(first, broken=False)
    again = await pool.acquire(1.0)
    assert again is first and await _backend_pid(again) == pid
    pool.release(again, broken=False)
    assert (pool.size, pool.idle) == (1, 1)


async def test_no_more_than_its_size_are_lent_and_a_waiter_gets_the_next_one_back(
    pool: ConnectionPool,
) -> None:
    one, two = await pool.acquire(1.0), await pool.acquire(1.0)
    assert one is not two and pool.size == 2
    third = asyncio.create_task(pool.acquire(5.0))
    await asyncio.sleep(0.05)
    assert not third.done() and pool.size == 2  # waiting, not opening a third
    pool.release(two, broken=False)
    assert await third is two
    with pytest.raises(NoConnectionFree, match=r"all 2 connections stayed busy for 0\.05 s"):
        await pool.acquire(0.05)
    pool.release(one, broken=False)
    pool.release(two, broken=False)
    assert (pool.size, pool.idle) == (2, 2)


async def test_a_broken_connection_is_closed_and_its_place_goes_to_a_waiter(
    pool: ConnectionPool,
) -> None:
    one, two, waiting = await _full_with_a_waiter(pool)
    pool.release(one, broken=True)
    fresh = await waiting
    assert one.is_closed() and fresh is not one and fresh is not two
    assert await fresh.fetchval("SELECT 1") == 1
    pool.release(fresh, broken=False)
    pool.release(two, broken=False)
    assert (pool.size, pool.idle) == (2, 2)


async def test_a_place_freed_for_a_waiter_is_not_taken_by_a_newcomer(
    pool: ConnectionPool,
) -> None:
    one, two, waiting = await _full_with_a_waiter(pool)
    pool.release(one, broken=True)  # its place is kept for the waiter...
    newcomer = asyncio.create_task(
        pool.acquire(0.3)
    )  # ...which a caller arriving now must not take
    fresh = await waiting
    with pytest.raises(NoConnectionFree):
        await newcomer
    assert pool.size == 2  # never three
    pool.release(fresh, broken=False)
    pool.release(two, broken=False)


async def test_a_connection_idle_too_long_is_replaced(
    pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await pool.acquire(1.0)
    pool.release(old, broken=False)
    monkeypatch.setattr(postgres_pool, "IDLE_LIFETIME", 0.0)  # a firewall may have dropped it

    fresh = await pool.acquire(1.0)

    assert fresh is not old and old.is_closed() and pool.size == 1
    pool.release(fresh, broken=False)


async def test_a_connection_given_back_in_a_transaction_is_closed(pool: ConnectionPool) -> None:
    conn = await pool.acquire(1.0)
    transaction = conn.transaction()
    await transaction.start()
    pool.release(conn, broken=False)  # the caller says all is well; the connection says not
    assert conn.is_closed() and (pool.size, pool.idle) == (0, 0)
    again = await pool.acquire(1.0)
    assert not again.is_in_transaction()
    pool.release(again, broken=False)


async def test_a_connection_the_server_closed_while_idle_is_not_lent(
    pool: ConnectionPool,
) -> None:
    conn = await pool.acquire(1.0)
    pid = await _backend_pid(conn)
    pool.release(conn, broken=False)
    killer = await _connect()
    try:
        assert await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await killer.close()
    for _ in range(100):  # the connection learns of it when it reads the server's goodbye
        if conn.is_closed():
            break
        await asyncio.sleep(0.02)
    assert conn.is_closed()
    fresh = await pool.acquire(1.0)
    assert fresh is not conn and await _backend_pid(fresh) != pid
    pool.release(fresh, broken=False)
    assert (pool.size, pool.idle) == (1, 1)


async def test_a_waiter_cancelled_as_it_is_handed_a_connection_passes_it_on(
    pool: ConnectionPool,
) -> None:
    one, two, waiting = await _full_with_a_waiter(pool)
    pool.release(one, broken=False)  # handed to the waiter...
    waiting.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert pool.idle == 1  # not lost
    assert await pool.acquire(1.0) is one
    pool.release(one, broken=False)
    pool.release(two, broken=False)


async def test_close_waits_for_lent_connections_then_cuts_off_the_rest(
    pool: ConnectionPool,
) -> None:
    returned, kept, waiting = await _full_with_a_waiter(pool)
    asyncio.get_running_loop().call_later(0.05, lambda: pool.release(returned, broken=False))
    await pool.close(0.3)
    assert returned.is_closed() and kept.is_closed()  # kept was never given back: cut off
    with pytest.raises(PoolClosed):
        await waiting
    with pytest.raises(PoolClosed):
        await pool.acquire(1.0)
    pool.release(kept, broken=False)  # given back late: nothing more to do
    assert (pool.size, pool.idle) == (0, 0)


async def test_a_cancelled_close_still_closes_every_connection() -> None:
    pool = ConnectionPool(_connect, 2)
    await pool.open()
    lent, idle = await pool.acquire(1.0), await pool.acquire(1.0)
    pool.release(idle, broken=False)
    closing = asyncio.create_task(pool.close(5.0))  # waits for `lent`...
    await asyncio.sleep(0.05)
    closing.cancel()  # ...and is cancelled: a stopping server's shutdown ran out of time
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert lent.is_closed() and idle.is_closed() and pool.idle == 0


async def test_the_backend_keeps_a_connection_after_a_refused_statement_not_after_a_cancel(
    tmp_path: Path,
) -> None:
    database = parse_database(postgres_url(tmp_path))
    assert database.url is not None and database.schema is not None
    db = PostgresDatabase(database.url, database.schema, pool_size=1)
    await db.open()
    try:
        async with db.connection("a read") as conn:
            pid = await _backend_pid(conn)
        with pytest.raises(StoreUnavailable, match=r"a bad read in .* failed: .*no_such_table"):
            await db.fetch("a bad read", "SELECT * FROM no_such_table")
        async with db.connection("a read") as conn:
            assert await _backend_pid(conn) == pid  # the server refused; the connection is fine
        with pytest.raises(ValueError, match="a conflict of the caller's"):
            async with db.transaction("a write") as conn:
                await conn.execute("CREATE TABLE written (n int)")
                raise ValueError("a conflict of the caller's")
        async with db.connection("a read") as conn:  # rolled back, and kept
            assert await _backend_pid(conn) == pid
            assert await conn.fetchval("SELECT to_regclass('written')") is None

        slow = asyncio.create_task(db.fetch("a slow read", "SELECT pg_sleep(5)"))
        await asyncio.sleep(0.2)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        async with db.connection("a read") as conn:  # not the one cut off mid-statement
            assert await _backend_pid(conn) != pid
            assert await conn.fetchval("SELECT 2") == 2
    finally:
        await db.close()
