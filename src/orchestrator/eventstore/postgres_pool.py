"""The backend's connections to PostgreSQL: at most `max_size`, each used by one caller at a time.

Why not asyncpg's own pool: its acquire and release cost about 200 µs of Python per use on a
2-core machine (a task for the shielded release, a timeout context for the acquire, a timer
re-armed at every release), more than the round trip of a small query (150 µs), and every read
and append of a busy server pays it. Here taking an idle connection is a list pop and giving it
back a list append; only a caller that must wait for one (every connection busy) or open one pays
for a future or a connect.

What a caller gets back is what the pool had: a connection with no transaction open and no
statement running. One that comes back otherwise (an error or a cancellation cut a statement
short, the server went away) is closed, not handed on: a new one is opened when needed. So is
one left idle for IDLE_LIFETIME: a firewall may have dropped it without a word.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable

import asyncpg

#: Seconds a connection may stay idle before it is closed rather than lent (asyncpg's pool
#: closes them after the same time).
IDLE_LIFETIME = 300.0


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
        #: Connections open and not lent, each with when it was given back, the most recently
        #: returned last (taken first: the one least likely to have been dropped while idle).
        self._idle: list[tuple[asyncpg.Connection, float]] = []
        #: Places taken: connections open, being opened, or promised to a waiter.
        self._size = 0
        #: Callers waiting for a connection, first come first served. A waiter's result is a
        #: connection handed straight over, or None: a place kept for it, to open one in.
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
        self._size += 1
        self.release(await self._open_in_place(), broken=False)

    async def acquire(self, timeout: float) -> asyncpg.Connection:
        """A connection for the caller alone until `release`; NoConnectionFree if none comes
        free within `timeout` seconds, PoolClosed once `close` has begun, the driver's error if
        a new connection cannot be opened."""
        if self._closing:
            raise PoolClosed("the connection pool is closed")
        while self._idle:
            conn, since = self._idle.pop()
            if not conn.is_closed() and time.monotonic() - since < IDLE_LIFETIME:
                self._lent.add(conn)
                return conn
            conn.terminate()  # closed by the server, or idle too long to trust
            self._size -= 1
        if self._size < self.max_size:
            self._size += 1
            return await self._open_in_place()
        return await self._wait(timeout)

    def release(self, conn: asyncpg.Connection, *, broken: bool) -> None:
        """Give `conn` back. `broken`: the caller's use of it ended with an error that may have
        left a statement running; it is closed rather than lent again (as is one that is
        closed or in a transaction whatever the caller says)."""
        self._lent.discard(conn)
        if broken or self._closing or conn.is_closed() or conn.is_in_transaction():
            conn.terminate()
            self._place_freed()
        elif not self._hand_over(conn):
            self._idle.append((conn, time.monotonic()))
        if self._all_returned is not None and not self._lent:
            self._all_returned.set()

    async def close(self, timeout: float) -> None:
        """Hand out nothing more; wait up to `timeout` seconds for the connections lent to come
        back, then close every connection within `timeout` more (those still lent, and any not
        closed by then, are cut off; all of them if this is cancelled)."""
        self._closing = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosed("the connection pool is closed"))
        idle: list[asyncpg.Connection] = []
        try:
            if self._lent:
                self._all_returned = asyncio.Event()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._all_returned.wait()
            idle = [conn for conn, _ in self._idle]
            self._idle.clear()
            self._size -= len(idle)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*(conn.close() for conn in idle), return_exceptions=True)
        finally:
            idle.extend(conn for conn, _ in self._idle)  # a close cancelled before it got there
            self._size -= len(self._idle)
            self._idle.clear()
            for conn in (*idle, *self._lent):  # never given back, or not closed in time
                if not conn.is_closed():
                    conn.terminate()

    async def _open_in_place(self) -> asyncpg.Connection:
        """Open a connection into a place already counted in `_size` (freed again if it fails:
        the next waiter may try)."""
        try:
            conn = await self._connect()
        except BaseException:
            self._place_freed()
            raise
        self._lent.add(conn)
        return conn

    def _place_freed(self) -> None:
        """A place came free (a connection closed, or one failed to open): kept for the longest
        waiting caller, who opens a connection in it, or given up."""
        if not self._hand_over(None):
            self._size -= 1

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
                    self._place_freed()
            if isinstance(exc, TimeoutError):
                raise NoConnectionFree(timeout, self.max_size) from None
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
        if conn is not None:
            return conn
        return await self._open_in_place()  # the place kept for this caller

    def _hand_over(self, conn: asyncpg.Connection | None) -> bool:
        """Give `conn` (or, with None, a place kept) to the longest waiting caller; whether one
        took it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                if conn is not None:
                    self._lent.add(conn)
                waiter.set_result(conn)
                return True
        return False
