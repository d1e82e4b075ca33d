"""The head of a PostgreSQL log as one process knows it, kept current by LISTEN/NOTIFY.

Every append transaction sends `NOTIFY <channel>, '<new head>'` (postgres.py); the notification
is delivered when it commits, to every listening connection, in every process. So a reader parked
in `wait_past` wakes as soon as any process commits, without polling. A listening connection can
be lost (a restarted server, a network cut): then waits poll the head every _POLL_INTERVAL
seconds, and listening resumes at most every _RELISTEN_INTERVAL seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import asyncpg

from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.eventstore.postgres_connection import DRIVER_ERRORS, PostgresDatabase

_POLL_INTERVAL = 0.5
_RELISTEN_INTERVAL = 2.0


class HeadWatch:
    """The last committed position known here; wakes waiters when any process moves it."""

    def __init__(
        self,
        db: PostgresDatabase,
        read_head: Callable[[], Awaitable[int]],
        *,
        channel: str | None = None,
    ) -> None:
        self._db = db
        self._read_head = read_head
        #: Where the moves are notified: the appends' channel unless told otherwise (the read
        #: models' followers watch their writer's checkpoint the same way).
        self._channel = channel
        #: The highest position known committed (ours, notified, or read).
        self.head = 0
        self._changed = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._last_listen = float("-inf")
        self._active = False

    async def start(self) -> None:
        """Listen, then read the head (so no commit falls between the two)."""
        self._active = True
        await self._listen()
        self.moved_to(await self._read_head())

    async def stop(self) -> None:
        """Stop listening and close the listening connection."""
        self._active = False
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await listener.close(timeout=5)

    def moved_to(self, head: int) -> None:
        """The log reached `head`: wake the waiters if that is news."""
        if head > self.head:
            self.head = head
            self._wake()

    async def refresh(self) -> int:
        """The head read from the database (every process's commits)."""
        self.moved_to(await self._read_head())
        return self.head

    async def wait_past(self, after: int, timeout: float) -> bool:
        """Wait until the head is past `after` or `timeout` seconds; True if it is. The head is
        read once more at the timeout, so a missed notification costs a wait, never an event."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            changed = self._changed
            if self.head > after:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            if self._listener is None:
                await self._relisten()
            listening = self._listener is not None
            # asyncio.timeout, not wait_for: see InMemoryEventStore.wait_for_events.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining if listening else _POLL_INTERVAL):
                    await changed.wait()
            if not listening:
                with contextlib.suppress(StoreUnavailable):
                    await self.refresh()
        return await self.refresh() > after

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _listen(self) -> None:
        self._last_listen = time.monotonic()
        self._listener = await self._db.listen(self._notified, self._lost, channel=self._channel)

    async def _relisten(self) -> None:
        if not self._active or time.monotonic() - self._last_listen < _RELISTEN_INTERVAL:
            return
        with contextlib.suppress(StoreUnavailable):
            await self._listen()
            await self.refresh()  # commits made while no one listened

    def _notified(self, payload: str) -> None:
        with contextlib.suppress(ValueError):
            self.moved_to(int(payload))

    def _lost(self) -> None:
        self._listener = None
        # Waiters parked on a notification that will not come now: wake them to poll instead.
        self._wake()
