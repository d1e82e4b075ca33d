"""One reader of the log for every `/events/stream` client of a process.

Each event is read and encoded into its SSE frame once, by one task. What that task read since
it last woke the clients is joined into one bytes object (a segment, cut at SEGMENT_BYTES) and
kept in a bounded buffer of the latest segments; a client caught up with the feed sends the new
segment as it is, in one write, and one that is further behind joins the segments after its
position. A client further behind than the buffer reaches (a resume from long ago, or a reader
slower than the log) reads the log itself until it catches up, so none is ever skipped:
positions have no gaps, so a frame's place in a segment is its position minus the segment's
first one.

The feed wakes the clients once per publication, not once per commit, and each waits on a plain
future of its own (no task, no cancellation): publications are at least INTERVAL_PER_CLIENT
seconds per client apart (at most MAX_INTERVAL), and each holds everything read since the last
one. A client's write costs the event loop about 30 µs, most of it the system call, so the
fan-out stays within about a third of the loop however often the log commits, while a few
clients, or a feed idle for longer than the interval, are woken at once.

Before this, 200 clients meant 200 readers of the log and 200 encodings of each event, and the
feed fell seconds behind the log under a modest load (bench/run.py, `sse_lag_p99_ms`).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections.abc import Callable

from orchestrator.eventstore.base import EventStore, RecordedEvent
from orchestrator.eventstore.errors import EventStoreError
from orchestrator.stopping import stop_tasks

log = logging.getLogger(__name__)

#: The latest frames kept for the clients, at most this many...
MAX_FRAMES = 8192
#: ...and at most this many bytes of them.
MAX_BYTES = 16 * 1024 * 1024
#: A publication's frames are joined into segments of about this many bytes (a larger frame is
#: a segment of its own); a client's write joins segments up to CHUNK_BYTES.
SEGMENT_BYTES = 256 * 1024
CHUNK_BYTES = 256 * 1024
#: Publications are at least this many seconds apart per client streaming, and at most
#: MAX_INTERVAL (the added latency): 200 clients are woken at most 50 times a second.
INTERVAL_PER_CLIENT = 0.0001
MAX_INTERVAL = 0.025
#: Events read from the log at a time.
_PAGE = 500


class _Segment:
    """Consecutive frames joined: `blob`, from position `first`; frame i (0-based) ends at
    byte `ends[i]` of it."""

    __slots__ = ("blob", "ends", "first", "last")

    def __init__(self, first: int, blob: bytes, ends: list[int]) -> None:
        self.first = first
        self.last = first + len(ends) - 1
        self.blob = blob
        self.ends = ends

    def start_of(self, position: int) -> int:
        """Where the frame at `position` begins in `blob`."""
        return self.ends[position - self.first - 1] if position > self.first else 0


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
        #: The segments held, oldest first (from index `_oldest` on), and their first positions.
        self._segments: list[_Segment] = []
        self._starts: list[int] = []
        self._oldest = 0
        #: The frames held and their bytes: from position `_first` to `head`.
        self._frames = 0
        self._bytes = 0
        self._first = 1
        #: The last position published (the buffer's right end).
        self.head = 0
        #: The clients streaming (the route counts them), and those waiting for the next
        #: publication.
        self.clients = 0
        self._waiting: set[asyncio.Future[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def started(self) -> bool:
        """True once a client asked for the feed."""
        return bool(self._tasks)

    def start(self, head: int) -> None:
        """Begin reading the log after `head` (the position clients start from by default)."""
        if not self._tasks:
            self.head = head
            self._first = head + 1
            self._tasks = [
                asyncio.create_task(self._follow(), name="event-feed"),
                asyncio.create_task(self._wake_on_stop(), name="event-feed-stop"),
            ]

    async def stop(self) -> None:
        """Stop reading (the server stops)."""
        tasks, self._tasks = self._tasks, []
        await stop_tasks(*tasks)
        self._wake()

    async def _wake_on_stop(self) -> None:
        await self._stopping.wait()
        self._wake()

    def _wake(self) -> None:
        """Wake every client waiting; the next ones wait for the next call."""
        waiting, self._waiting = self._waiting, set()
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(None)

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        read = self.head
        frames: list[bytes] = []  # read, not yet published
        published = -MAX_INTERVAL
        while not self._stopping.is_set():
            try:
                events = await self._store.read_all(read, _PAGE)
                frames += [self._encode(event) for event in events]
                if events:
                    read = events[-1].position
                if frames:
                    interval = min(MAX_INTERVAL, self.clients * INTERVAL_PER_CLIENT)
                    wait = published + interval - loop.time()
                    if wait > 0 and len(events) < _PAGE:
                        await asyncio.sleep(wait)  # then read what came meanwhile, and publish
                        continue
                    self._publish(frames, read)
                    frames = []
                    published = loop.time()
                if len(events) < _PAGE:  # at the head: wait (at once if it moved meanwhile)
                    await self._store.wait_for_events(read, 1.0)
            except EventStoreError as exc:  # the clients wait; the feed tries again
                log.warning("the event feed cannot read the log: %s", exc)
                await asyncio.sleep(1.0)

    def _publish(self, frames: list[bytes], last: int) -> None:
        """Hold `frames` (up to position `last`) and wake the clients."""
        first = last - len(frames) + 1
        start, total = 0, 0
        while start < len(frames):
            size, ends, end = 0, [], start
            while end < len(frames) and (end == start or size + len(frames[end]) <= SEGMENT_BYTES):
                size += len(frames[end])
                ends.append(size)
                end += 1
            blob = frames[start] if end == start + 1 else b"".join(frames[start:end])
            self._segments.append(_Segment(first + start, blob, ends))
            self._starts.append(first + start)
            total += size
            start = end
        self._frames += len(frames)
        self._bytes += total
        self.head = last
        self._trim()
        self._wake()

    def _trim(self) -> None:
        """Let the oldest frames go until the buffer is within MAX_FRAMES and MAX_BYTES (the
        latest frame stays)."""
        segments = self._segments
        while self._frames > MAX_FRAMES or (self._bytes > MAX_BYTES and self._frames > 1):
            oldest = segments[self._oldest]
            end = oldest.ends[self._first - oldest.first]
            self._bytes -= end - oldest.start_of(self._first)
            self._frames -= 1
            self._first += 1
            if self._first > oldest.last:
                self._oldest += 1
        if self._oldest > 64 and self._oldest * 2 > len(segments):
            del segments[: self._oldest]
            del self._starts[: self._oldest]
            self._oldest = 0

    def frames_after(self, position: int, limit: int = CHUNK_BYTES) -> tuple[bytes, int] | None:
        """The frames after `position`, whole, in one bytes object of at most about `limit`
        bytes (at least one segment's rest), and the position of the last one; (b"",
        `position`) when there is none yet; None when the buffer no longer holds the frame
        right after `position` (read the log instead)."""
        if position + 1 < self._first:
            return None
        if position >= self.head:
            return b"", position
        segments, starts = self._segments, self._starts
        index = bisect.bisect_right(starts, position + 1, self._oldest) - 1
        segment = segments[index]
        offset = segment.start_of(position + 1)
        chunk = segment.blob[offset:] if offset else segment.blob
        last = segment.last
        index += 1
        if index < len(segments) and len(chunk) + len(segments[index].blob) <= limit:
            parts, size = [chunk], len(chunk)
            while index < len(segments) and size + len(segments[index].blob) <= limit:
                segment = segments[index]
                parts.append(segment.blob)
                size += len(segment.blob)
                last = segment.last
                index += 1
            chunk = b"".join(parts)
        return chunk, last

    async def wait_past(self, position: int, timeout: float) -> bool:
        """Return when the feed has published past `position` (True), after `timeout` seconds
        or when the server stops (False unless it has)."""
        if self.head <= position and not self._stopping.is_set():
            # A future of its own, resolved by the next publication or by its timer: no
            # cancellation (the cheapest wait for hundreds of clients many times a second).
            loop = asyncio.get_running_loop()
            waiter = loop.create_future()
            self._waiting.add(waiter)
            timer = loop.call_later(timeout, _release, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiting.discard(waiter)
        return self.head > position


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
