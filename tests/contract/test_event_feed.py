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


async def read_everything(feed: EventFeed, store: EventStore, after: int, head: int) -> list[bytes]:
    """What a client starting after `after` is sent, as /events/stream does it."""
    position, sent = after, []
    while position < head:
        found = feed.frames_after(position, 7)
        if found is None:
            events = await store.read_all(position, 7)
            sent += [frame(e) for e in events]
            position = events[-1].position
            continue
        chunk, last = found
        if not chunk:
            await feed.wait_past(position, 2.0)
            continue
        sent += chunk
        position = last
    return sent


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

    assert from_start == [b"%d;" % p for p in range(1, head + 1)]
    assert from_middle == [b"%d;" % p for p in range(21, head + 1)]
    assert from_head == [b"%d;" % p for p in range(head - 2, head + 1)]
    assert feed.frames_after(0, 5) is None  # behind the buffer: read the log
    found = feed.frames_after(head - 10, 100)
    assert found is not None and len(found[0]) == 10


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
        assert feed.frames_after(0, 10) == ([b"1;"], 1)
    finally:
        stopping.set()
        await feed.stop()
