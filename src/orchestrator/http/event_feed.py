"""One reader of the log for every `/events/stream` client of a process.

Each event is read and encoded into its SSE frame once, by one task, and kept in a bounded
buffer of the latest frames; each client copies from that buffer from its own position and
sends what it finds in one write. A client further behind than the buffer reaches (a resume
from long ago, or a reader slower than the log) reads the log itself until it catches up, so
none is ever skipped: positions have no gaps, so a frame's place in the buffer is its position
minus the first one's.

Before this, 200 clients meant 200 readers of the log and 200 encodings of each event, and the
feed fell seconds behind the log under a modest load (bench/run.py, `sse_lag_p99_ms`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable

from orchestrator.eventstore.base import EventStore, RecordedEvent
from orchestrator.eventstore.errors import EventStoreError

log = logging.getLogger(__name__)

#: The latest frames kept for the clients, at most this many...
MAX_FRAMES = 8192
#: ...and at most this many bytes of them.
MAX_BYTES = 16 * 1024 * 1024
#: Events read from the log at a time.
_PAGE = 500


class EventFeed:
    """The latest encoded frames of the log, and a wake-up for clients when more arrive."""

    def __init__(
        self,
        store: EventStore,
        encode: Callable[[RecordedEvent], bytes],
        stopping: asyncio.Event,
    ) -> None:
        self._store = store
        self._encode = encode
        self._stopping = stopping
        self._frames: deque[bytes] = deque()
        self._bytes = 0
        #: The position of the frame at the buffer's left end (when it holds any).
        self._first = 1
        #: The last position read (the buffer's right end).
        self.head = 0
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        """True once a client asked for the feed."""
        return self._task is not None

    def start(self, head: int) -> None:
        """Begin reading the log after `head` (the position clients start from by default)."""
        if self._task is None:
            self.head = head
            self._first = head + 1
            self._task = asyncio.create_task(self._follow(), name="event-feed")

    async def stop(self) -> None:
        """Stop reading (the server stops)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _follow(self) -> None:
        while not self._stopping.is_set():
            try:
                events = await self._store.read_all(self.head, _PAGE)
                if not events:
                    await self._store.wait_for_events(self.head, 1.0)
                    continue
            except EventStoreError as exc:  # the clients wait; the feed tries again
                log.warning("the event feed cannot read the log: %s", exc)
                await asyncio.sleep(1.0)
                continue
            for event in events:
                frame = self._encode(event)
                self._frames.append(frame)
                self._bytes += len(frame)
            self.head = events[-1].position
            while len(self._frames) > MAX_FRAMES or (
                self._bytes > MAX_BYTES and len(self._frames) > 1
            ):
                self._bytes -= len(self._frames.popleft())
                self._first += 1
            self._arrived.set()
            self._arrived = asyncio.Event()

    def frames_after(self, position: int, limit: int) -> tuple[list[bytes], int] | None:
        """Up to `limit` frames after `position` and the position of the last one; None when the
        buffer no longer holds the frame right after `position` (read the log instead)."""
        if position + 1 < self._first:
            return None
        start = position + 1 - self._first
        end = min(len(self._frames), start + limit)
        if start >= end:
            return [], position
        return [self._frames[index] for index in range(start, end)], position + end - start

    async def wait_past(self, position: int, timeout: float) -> None:
        """Return when the feed has read past `position`, after `timeout` seconds, or when the
        server stops."""
        if self.head > position:
            return
        arrived = asyncio.ensure_future(self._arrived.wait())
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait(
                {arrived, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            arrived.cancel()
            stop.cancel()
