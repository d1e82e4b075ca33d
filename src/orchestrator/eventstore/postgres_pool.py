"""The backend's connections to PostgreSQL: at most `max_size`, each used by one caller at a time.

Why not asyncpg's own pool: its acquire and release cost about 200 µs of Python per use on a
2-core machine (a task for the shielded release, a timeout context for the acquire, a timer
re-armed at every release), more than the round trip of a small query (150 µs), and every read
and append of a busy server pays it. Here taking an idle connection is a list pop and giving it
back a list append; only a caller that must wait for one (every connection busy) or open one pays
for a future or a connect.

What a caller gets back is what the pool had: a connection with no transaction open and no
statement running. One that comes back otherwise (an error or a cancellation cut a statement
short, the server went away) is closed, not handed on: a new one is opened when needed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable

import asyncpg


class PoolClosed(Exception):
    """The pool is closing or closed: no connection is handed out."""


class NoConnectionFree(Exception):
    """Every connection stayed busy for as long as the caller would wait."""

    def __init__(self, seconds: float, size: int) -> None:
        super().__init__(f"all {size} connections stayed busy for {seconds:g} s")


class ConnectionPool:
    """Up to `max_size` connections from `connect`, lent one caller at a time."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], max_size: int) -> None:
        if max_size < 1:
            raise ValueError(f"a pool needs at least one connection, not {max_size}")
        self._connect = connect
        self.max_size = max_size
        #: Connections open and not lent, the most recently returned last (taken first: it is
        #: the one least likely to have been closed by the server while idle).
        self._idle: list[asyncpg.Connection] = []
        #: Connections open or being opened, lent or not.
        self._size = 0
        #: Callers waiting for a connection, first come first served. A waiter's result is a
        #: connection handed straight over, or None: a place came free, open a connection.
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        #: Connections lent now (cut off by a close that waited for them in vain).
        self._lent: set[asyncpg.Connection] = set()
        self._closing = False
        self._all_returned: asyncio.Event | None = None

    @property
    def size(self) -> int:
        """Connections open (or being opened) now."""
        return self._size

    @property
    def idle(self) -> int:
        """Connections open and not lent now."""
        return len(self._idle)

    async def open(self) -> None:
        """Open the first connection: a server that cannot be reached fails here, at start."""
        self.release(await self._open_one(), broken=False)

    async def acquire(self, timeout: float) -> asyncpg.Connection:
        """A connection for the caller alone until `release`; NoConnectionFree if none comes
        free within `timeout` seconds, PoolClosed once `close` has begun, the driver's error if
        a new connection cannot be opened."""
        if self._closing:
            raise PoolClosed("the connection pool is closed")
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                self._lent.add(conn)
                return conn
            self._size -= 1  # the server closed it while it was idle
        if self._size < self.max_size:
            return await self._open_one()
        return await self._wait(timeout)

    def release(self, conn: asyncpg.Connection, *, broken: bool) -> None:
        """Give `conn` back. `broken`: the caller's use of it ended with an error that may have
        left a statement running or a transaction open; it is closed rather than lent again
        (as is one that is closed or in a transaction whatever the caller says)."""
        self._lent.discard(conn)
        if broken or self._closing or conn.is_closed() or conn.is_in_transaction():
            conn.terminate()
            self._size -= 1
            self._hand_over(None)
        elif not self._hand_over(conn):
            self._idle.append(conn)
        if self._all_returned is not None and not self._lent:
            self._all_returned.set()

    async def close(self, timeout: float) -> None:
        """Hand out nothing more; wait up to `timeout` seconds for the connections lent to come
        back, then close every connection (those still lent are cut off)."""
        self._closing = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed("the connection pool is closed"))
        if self._lent:
            self._all_returned = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._all_returned.wait()
            for conn in list(self._lent):  # never given back: its statement is cut off
                conn.terminate()
        idle, self._idle = self._idle, []
        self._size -= len(idle)
        for conn in idle:
            try:
                async with asyncio.timeout(timeout):
                    await conn.close()
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()

    async def _open_one(self) -> asyncpg.Connection:
        self._size += 1
        try:
            conn = await self._connect()
        except BaseException:
            self._size -= 1
            self._hand_over(None)  # a waiter may try where this failed
            raise
        self._lent.add(conn)
        return conn

    async def _wait(self, timeout: float) -> asyncpg.Connection:
        waiter: asyncio.Future[asyncpg.Connection | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                conn = await waiter
        except BaseException as exc:
            # Handed something in the same turn as the timeout or cancellation: pass it on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                handed = waiter.result()
                if handed is not None:
                    self.release(handed, broken=False)
                else:
                    self._hand_over(None)
            if isinstance(exc, TimeoutError):
                raise NoConnectionFree(timeout, self.max_size) from None
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
        if conn is not None:
            return conn
        return await self._open_one()  # a place came free: this caller opens the connection

    def _hand_over(self, conn: asyncpg.Connection | None) -> bool:
        """Give `conn` (or, with None, a free place) to the longest waiting caller; whether one
        took it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                if conn is not None:
                    self._lent.add(conn)
                waiter.set_result(conn)
                return True
        return False
