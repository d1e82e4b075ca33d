"""The shared event feed of /events/stream on every backend: frames in position order from any
position, a bounded buffer, and a client further back than the buffer told to read the log."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from orchestrator.eventstore.base import EventStore, NewEvent, RecordedEvent
from orchestrator.http import event_feed
from orchestrator.http.event_feed import EventFeed

pytestmark = pytest.mark.anyio


def frame(event: RecordedEvent) -> bytes:
    return b"%d;" % event.position


async def append(store: EventStore, count: int) -> None:
    """`count` more events, each in a new stream."""
    first = await store.head_position()
    for n in range(first, first + count):
        await store.append(f"s-{n}", 0, [NewEvent(type="T", data=msgspec.json.encode(n))])


async def read_everything(feed: EventFeed, store: EventStore, after: int, head: int) -> bytes:
    """What a client starting after `after` is sent, as /events/stream does it."""
    position, sent = after, b""
    while position < head:
        found = feed.frames_after(position, 7)
        if found is None:
            events = await store.read_all(position, 7)
            sent += b"".join(frame(e) for e in events)
            position = events[-1].position
            continue
        chunk, last = found
        if not chunk:
            await feed.wait_past(position, 2.0)
            continue
        sent += chunk
        position = last
    return sent


def frames_of(first: int, last: int) -> bytes:
    return b"".join(b"%d;" % p for p in range(first, last + 1))


async def test_clients_get_every_frame_once_in_order_from_any_position(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_feed, "MAX_FRAMES", 10)  # most of the log falls out of the buffer
    stopping = asyncio.Event()
    feed = EventFeed(store, frame, stopping)
    await append(store, 5)
    feed.start(await store.head_position())
    try:
        await append(store, 40)
        head = await store.head_position()
        await asyncio.wait_for(feed.wait_past(head - 1, 5.0), 5.0)

        from_start, from_middle, from_head = await asyncio.gather(
            read_everything(feed, store, 0, head),
            read_everything(feed, store, 20, head),
            read_everything(feed, store, head - 3, head),
        )
    finally:
        stopping.set()
        await feed.stop()

    assert from_start == frames_of(1, head)
    assert from_middle == frames_of(21, head)
    assert from_head == frames_of(head - 2, head)
    assert feed.frames_after(0, 5) is None  # behind the buffer: read the log
    assert feed.frames_after(head - 10, 100) == (frames_of(head - 9, head), head)
    assert feed.frames_after(head - 11, 100) is None


async def test_a_client_waiting_at_the_head_wakes_on_the_next_append(store: EventStore) -> None:
    stopping = asyncio.Event()
    feed = EventFeed(store, frame, stopping)
    feed.start(0)
    try:
        waiting = asyncio.ensure_future(feed.wait_past(0, 10.0))
        await asyncio.sleep(0)
        assert not waiting.done()
        await append(store, 1)
        await asyncio.wait_for(waiting, 5.0)
        assert feed.frames_after(0, 10) == (b"1;", 1)
        assert feed.frames_after(1, 10) == (b"", 1)
    finally:
        stopping.set()
        await feed.stop()


@pytest.mark.parametrize(("segment_bytes", "max_bytes"), [(1, 40), (9, 40), (1 << 20, 1 << 20)])
async def test_frames_come_whole_once_and_in_order_however_they_are_segmented(
    store: EventStore, monkeypatch: pytest.MonkeyPatch, segment_bytes: int, max_bytes: int
) -> None:
    monkeypatch.setattr(event_feed, "SEGMENT_BYTES", segment_bytes)
    monkeypatch.setattr(event_feed, "MAX_BYTES", max_bytes)  # a few frames' worth, or all
    stopping = asyncio.Event()
    feed = EventFeed(store, frame, stopping)
    feed.start(0)
    try:
        for _ in range(4):  # several publications of several commits each
            await append(store, 7)
            head = await store.head_position()
            await asyncio.wait_for(feed.wait_past(head - 1, 5.0), 5.0)
        sent = await asyncio.gather(
            *(read_everything(feed, store, after, head) for after in (0, 3, 12, head - 1))
        )
    finally:
        stopping.set()
        await feed.stop()

    assert sent == [frames_of(after + 1, head) for after in (0, 3, 12, head - 1)]
    for after in range(head):  # whatever the limit, never a frame cut in two
        found = feed.frames_after(after, 7)
        if found is not None:
            chunk, last = found
            assert chunk == frames_of(after + 1, last)
    if max_bytes < 1 << 20:
        assert feed.frames_after(0, 100) is None  # the byte budget let the oldest go


async def test_commits_close_together_reach_a_crowd_of_clients_in_one_publication(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_feed, "MAX_INTERVAL", 0.5)
    stopping = asyncio.Event()
    feed = EventFeed(store, frame, stopping)
    feed.clients = 10_000  # as many as make the feed wait MAX_INTERVAL between publications
    feed.start(0)
    try:
        await append(store, 1)
        await asyncio.wait_for(feed.wait_past(0, 5.0), 5.0)  # an idle feed publishes at once
        waiting = asyncio.ensure_future(feed.wait_past(1, 5.0))
        await append(store, 3)  # three commits
        assert await asyncio.wait_for(waiting, 5.0)
    finally:
        stopping.set()
        await feed.stop()

    assert feed.head == 4
    assert feed.frames_after(1, 1) == (b"2;3;4;", 4)  # one segment: one write for the three


async def test_a_waiting_client_is_told_of_a_timeout_and_let_go_when_the_server_stops(
    store: EventStore,
) -> None:
    stopping = asyncio.Event()
    feed = EventFeed(store, frame, stopping)
    feed.start(0)
    try:
        assert not await feed.wait_past(0, 0.01)  # nothing new: the route sends a keep-alive
        waiting = asyncio.ensure_future(feed.wait_past(0, 60.0))
        await asyncio.sleep(0)
        assert not waiting.done()
        stopping.set()
        assert not await asyncio.wait_for(waiting, 5.0)
        assert not await feed.wait_past(0, 60.0)  # once stopping, nobody waits
    finally:
        stopping.set()
        await feed.stop()
