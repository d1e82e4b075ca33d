"""The event-store contract: every backend keeps the same append-only log with the same promises.

Each test runs once per backend (see `conftest.py`): round trip, optimistic concurrency, atomic
batches, gap-free positions, paging, waiting for new events, concurrent writers, refused events,
filtered reads, the hash chain and imports.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime, timedelta

import anyio
import msgspec
import pytest

from orchestrator.eventstore.base import (
    AppendResult,
    EventStore,
    NewEvent,
    RecordedEvent,
    StreamAppend,
)
from orchestrator.eventstore.chain import GENESIS, event_hash
from orchestrator.eventstore.errors import ConcurrencyConflict, EventStoreError, InvalidEvent

#: Generous bound for anything that should happen "at once"; only reached when a test fails.
PROMPT = 5.0


def new_event(n: int, kind: str = "Happened") -> NewEvent:
    """A small event whose payload and metadata both say `n`."""
    return NewEvent(type=kind, data=msgspec.json.encode({"n": n}), metadata={"n": n})


async def whole_log(store: EventStore) -> list[RecordedEvent]:
    """Every event of the log, in position order."""
    return await store.read_all(0, limit=100_000)


def assert_gap_free(log: list[RecordedEvent]) -> None:
    """Positions are 1, 2, 3, ... and every stream's versions are 1, 2, 3, ... in log order."""
    assert [e.position for e in log] == list(range(1, len(log) + 1))
    versions: dict[str, list[int]] = {}
    for event in log:
        versions.setdefault(event.stream_id, []).append(event.version)
    for stream, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), stream


# Round trip --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_appended_events_read_back_exactly_as_written(store: EventStore) -> None:
    written = [
        NewEvent(
            type="WorkflowStarted",
            data='{"name":"café ✓","config":{"retries":[1,2]}}'.encode(),
            metadata={
                "correlation_id": "corr-1",
                "causation_id": None,
                "actor": "alice",
                "idempotency_key": "key-1",
                "nested": {"list": [1, 2.5, "three"], "flag": True},
            },
        ),
        NewEvent(type="StepStarted", data=b'{"state":"INIT"}', metadata={}),
        NewEvent(type="StepSucceeded", data=b'{"result":{}}'),
    ]
    before = datetime.now(UTC)
    result = await store.append("workflow-1", 0, written)
    after = datetime.now(UTC)

    assert result == AppendResult(version=3, position=3)
    recorded = await store.read_stream("workflow-1")
    assert [(e.stream_id, e.version, e.position) for e in recorded] == [
        ("workflow-1", 1, 1),
        ("workflow-1", 2, 2),
        ("workflow-1", 3, 3),
    ]
    assert [(e.type, e.data, e.metadata) for e in recorded] == [
        (w.type, w.data, w.metadata) for w in written
    ]
    for event in recorded:
        assert event.recorded_at.utcoffset() is not None, "recorded_at must be timezone-aware"
        assert before - timedelta(seconds=1) <= event.recorded_at <= after + timedelta(seconds=1)
    assert await store.read_all() == recorded


@pytest.mark.anyio
async def test_a_new_stream_is_appended_to_with_expected_version_zero(store: EventStore) -> None:
    assert await store.read_stream("workflow-9") == []

    first = await store.append("workflow-9", 0, [new_event(1)])
    second = await store.append("workflow-9", 1, [new_event(2)])

    assert (first.version, second.version) == (1, 2)
    assert [e.version for e in await store.read_stream("workflow-9")] == [1, 2]


# Optimistic concurrency ---------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("stale", [0, 1, 3, 7])
async def test_appending_at_the_wrong_version_raises_a_conflict_and_appends_nothing(
    store: EventStore, stale: int
) -> None:
    await store.append("workflow-1", 0, [new_event(1), new_event(2)])
    log_before = await whole_log(store)

    with pytest.raises(ConcurrencyConflict) as caught:
        await store.append("workflow-1", stale, [new_event(3)])

    conflict = caught.value
    assert (conflict.stream_id, conflict.expected, conflict.actual) == ("workflow-1", stale, 2)
    assert isinstance(conflict, EventStoreError)
    assert await whole_log(store) == log_before
    assert await store.head_position() == 2


@pytest.mark.anyio
async def test_expecting_a_version_of_a_stream_that_does_not_exist_is_a_conflict(
    store: EventStore,
) -> None:
    with pytest.raises(ConcurrencyConflict) as caught:
        await store.append("workflow-404", 1, [new_event(1)])

    assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == (
        "workflow-404",
        1,
        0,
    )
    assert await store.read_stream("workflow-404") == []
    assert await store.head_position() == 0


# Atomic batches -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_batch_of_events_lands_together_at_consecutive_versions_and_positions(
    store: EventStore,
) -> None:
    await store.append("other", 0, [new_event(0)])

    result = await store.append("workflow-1", 0, [new_event(i) for i in range(1, 5)])

    stream = await store.read_stream("workflow-1")
    assert [(e.version, e.position) for e in stream] == [(1, 2), (2, 3), (3, 4), (4, 5)]
    assert [msgspec.json.decode(e.data) for e in stream] == [{"n": i} for i in range(1, 5)]
    assert result == AppendResult(version=4, position=5)


@pytest.mark.anyio
async def test_a_conflicting_batch_leaves_no_trace(store: EventStore) -> None:
    await store.append("workflow-1", 0, [new_event(1), new_event(2)])
    log_before = await whole_log(store)

    with pytest.raises(ConcurrencyConflict):
        await store.append("workflow-1", 0, [new_event(10), new_event(11), new_event(12)])

    assert await whole_log(store) == log_before
    assert await store.head_position() == 2
    # The refused batch did not use up any position or version either.
    result = await store.append("workflow-1", 2, [new_event(3)])
    assert result == AppendResult(version=3, position=3)


@pytest.mark.anyio
async def test_concurrent_batches_are_never_interleaved(store: EventStore) -> None:
    batches = {f"workflow-{i}": [new_event(n) for n in range(5)] for i in range(1, 11)}

    results = await asyncio.gather(*(store.append(s, 0, b) for s, b in batches.items()))

    log = await whole_log(store)
    assert_gap_free(log)
    assert len(log) == 50
    for stream, result in zip(batches, results, strict=True):
        positions = [e.position for e in log if e.stream_id == stream]
        assert positions == list(range(result.position - 4, result.position + 1)), stream


# Positions and reads ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_positions_increase_by_one_across_many_streams(store: EventStore) -> None:
    streams = [f"workflow-{i}" for i in range(1, 8)]
    versions = dict.fromkeys(streams, 0)
    last_positions: list[int] = []
    for turn in range(60):
        stream = streams[turn % len(streams)]
        size = 1 + turn % 3
        result = await store.append(stream, versions[stream], [new_event(turn)] * size)
        versions[stream] = result.version
        last_positions.append(result.position)

    log = await whole_log(store)
    assert_gap_free(log)
    assert last_positions == sorted(set(last_positions))
    assert last_positions[-1] == len(log) == sum(1 + turn % 3 for turn in range(60))
    for stream in streams:
        assert len(await store.read_stream(stream)) == versions[stream]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("up_to", "expected"),
    [(0, []), (1, [1]), (3, [1, 2, 3]), (5, [1, 2, 3, 4, 5]), (9, [1, 2, 3, 4, 5])],
)
async def test_read_stream_stops_at_up_to_version(
    store: EventStore, up_to: int, expected: list[int]
) -> None:
    await store.append("workflow-1", 0, [new_event(n) for n in range(1, 6)])
    await store.append("workflow-2", 0, [new_event(n) for n in range(1, 4)])

    events = await store.read_stream("workflow-1", up_to_version=up_to)

    assert [e.version for e in events] == expected
    assert {e.stream_id for e in events} <= {"workflow-1"}
    assert [msgspec.json.decode(e.data) for e in events] == [{"n": n} for n in expected]


@pytest.mark.anyio
@pytest.mark.parametrize("limit", [1, 5, 23, 100])
async def test_paging_through_read_all_returns_every_event_once_in_order(
    store: EventStore, limit: int
) -> None:
    for n in range(23):
        stream = f"workflow-{n % 4}"
        await store.append(stream, n // 4, [new_event(n)])

    pages: list[list[RecordedEvent]] = []
    after = 0
    while page := await store.read_all(after, limit):
        assert len(page) <= limit
        pages.append(page)
        after = page[-1].position

    seen = [event for page in pages for event in page]
    assert [e.position for e in seen] == list(range(1, 24))
    assert [msgspec.json.decode(e.data) for e in seen] == [{"n": n} for n in range(23)]
    assert all(len(page) == limit for page in pages[:-1])
    assert await store.read_all(23, limit) == []


@pytest.mark.anyio
async def test_head_position_is_the_last_committed_position(store: EventStore) -> None:
    assert await store.head_position() == 0

    await store.append("workflow-1", 0, [new_event(1)])
    result = await store.append("workflow-2", 0, [new_event(2), new_event(3)])
    assert await store.head_position() == result.position == 3

    with pytest.raises(ConcurrencyConflict):
        await store.append("workflow-2", 0, [new_event(4)])
    assert await store.head_position() == 3


# Waiting for new events ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_waiting_reader_is_woken_promptly_by_an_append(store: EventStore) -> None:
    await store.append("workflow-1", 0, [new_event(1)])
    head = await store.head_position()
    waiter = asyncio.create_task(store.wait_for_events(head, timeout=30.0))
    await anyio.wait_all_tasks_blocked()
    assert not waiter.done(), "nothing was appended yet, the waiter must still be waiting"

    started = time.monotonic()
    await store.append("workflow-1", 1, [new_event(2)])
    with anyio.fail_after(PROMPT):
        woken = await waiter

    assert woken is True
    # Far below the 30 s timeout: the append woke the waiter, the timeout did not.
    assert time.monotonic() - started < PROMPT


@pytest.mark.anyio
async def test_waiting_returns_false_after_the_timeout_when_nothing_is_appended(
    store: EventStore,
) -> None:
    await store.append("workflow-1", 0, [new_event(1)])

    started = time.monotonic()
    woken = await store.wait_for_events(await store.head_position(), timeout=0.2)

    assert woken is False
    assert 0.15 <= time.monotonic() - started < PROMPT


@pytest.mark.anyio
async def test_waiting_returns_at_once_when_events_past_the_position_exist(
    store: EventStore,
) -> None:
    await store.append("workflow-1", 0, [new_event(1), new_event(2)])

    with anyio.fail_after(PROMPT):
        assert await store.wait_for_events(1, timeout=30.0) is True
        assert await store.wait_for_events(0, timeout=30.0) is True


@pytest.mark.anyio
async def test_a_tailing_reader_sees_every_event_once_in_order_while_writers_append(
    store: EventStore,
) -> None:
    writers, per_writer = 4, 40
    total = writers * per_writer
    seen: list[RecordedEvent] = []

    async def tail() -> None:
        after = 0
        while len(seen) < total:
            page = await store.read_all(after, limit=7)
            if page:
                seen.extend(page)
                after = page[-1].position
            else:
                await store.wait_for_events(after, timeout=0.5)

    async def write(writer: int) -> None:
        for version in range(per_writer):
            await store.append(f"writer-{writer}", version, [new_event(version)])

    with anyio.fail_after(30):
        await asyncio.gather(tail(), *(write(w) for w in range(writers)))

    assert [e.position for e in seen] == list(range(1, total + 1))
    assert seen == await whole_log(store)


# Concurrent writers -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_concurrent_appends_have_exactly_one_winner_per_stream_and_version(
    store: EventStore,
) -> None:
    contenders = 5
    contested = [f"contested-{s}" for s in range(3)]
    solo = [f"solo-{i}" for i in range(50)]

    async def round_of_appends(expected: int) -> dict[str, list[AppendResult | BaseException]]:
        calls: list[tuple[str, int]] = [(stream, 0) for stream in solo] if expected == 0 else []
        calls += [(stream, n) for stream in contested for n in range(contenders)]
        random.Random(expected).shuffle(calls)
        outcomes = await asyncio.gather(
            *(store.append(s, expected, [new_event(n, kind=f"by-{n}")]) for s, n in calls),
            return_exceptions=True,
        )
        grouped: dict[str, list[AppendResult | BaseException]] = {}
        for (stream, _), outcome in zip(calls, outcomes, strict=True):
            grouped.setdefault(stream, []).append(outcome)
        return grouped

    for expected in (0, 1):
        grouped = await round_of_appends(expected)
        if expected == 0:
            for stream in solo:
                [outcome] = grouped[stream]
                assert isinstance(outcome, AppendResult), outcome
                assert outcome.version == 1
        for stream in contested:
            winners = [o for o in grouped[stream] if isinstance(o, AppendResult)]
            losers = [o for o in grouped[stream] if isinstance(o, ConcurrencyConflict)]
            assert len(winners) == 1, grouped[stream]
            assert len(losers) == contenders - 1, grouped[stream]
            assert winners[0].version == expected + 1
            for loser in losers:
                assert (loser.stream_id, loser.expected, loser.actual) == (
                    stream,
                    expected,
                    expected + 1,
                )

    log = await whole_log(store)
    assert_gap_free(log)
    assert len(log) == len(solo) + 2 * len(contested)
    assert await store.head_position() == len(log)
    for stream in contested:
        assert [e.version for e in await store.read_stream(stream)] == [1, 2]


# Shutdown and refused appends ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_closing_lets_appends_already_queued_finish(store: EventStore) -> None:
    appends = [
        asyncio.create_task(store.append(f"workflow-{i}", 0, [new_event(i)] * 50))
        for i in range(1, 21)
    ]
    # Two turns of the loop: the appends queue up, then a writer may take them and begin its
    # commit. close() comes while they are in flight, as it does when a server shuts down busy.
    await asyncio.sleep(0)
    await asyncio.sleep(0)

    with anyio.fail_after(PROMPT):
        await store.close()
        results = await asyncio.gather(*appends)

    assert sorted(r.position for r in results) == [50 * i for i in range(1, 21)]
    await store.open()
    log = await whole_log(store)
    assert_gap_free(log)
    assert sorted({e.stream_id for e in log}) == sorted(f"workflow-{i}" for i in range(1, 21))
    assert len(log) == 20 * 50


#: Events no backend can hold: a payload that is not UTF-8 JSON text, metadata JSON cannot encode.
UNSTORABLE = {
    "payload-not-utf8": NewEvent(type="Odd", data=b"\xff\xfe\x00binary"),
    "metadata-not-json": NewEvent(type="Odd", data=b"{}", metadata={"handle": object()}),
}


@pytest.mark.anyio
@pytest.mark.parametrize("unstorable", UNSTORABLE.values(), ids=UNSTORABLE.keys())
async def test_an_event_the_log_cannot_hold_is_refused_alone(
    store: EventStore, unstorable: NewEvent
) -> None:
    with anyio.fail_after(PROMPT):
        before, refused, after = await asyncio.gather(
            store.append("workflow-1", 0, [new_event(1)]),
            store.append("workflow-2", 0, [new_event(2), unstorable]),
            store.append("workflow-3", 0, [new_event(3)]),
            return_exceptions=True,
        )

    assert isinstance(refused, InvalidEvent), refused
    assert isinstance(refused, EventStoreError)
    assert isinstance(before, AppendResult), before
    assert isinstance(after, AppendResult), after
    assert await store.read_stream("workflow-2") == [], "a refused batch appends nothing"
    log = await whole_log(store)
    assert_gap_free(log)
    assert [e.stream_id for e in log] == ["workflow-1", "workflow-3"]
    # The store keeps working, for the refused stream too.
    with anyio.fail_after(PROMPT):
        result = await store.append("workflow-2", 0, [new_event(4)])
    assert result == AppendResult(version=1, position=3)


# Filtered reads, payload versions, the hash chain and imports ------------------------------------


@pytest.mark.anyio
async def test_read_all_can_be_narrowed_to_one_event_type_or_one_stream(store: EventStore) -> None:
    for n in range(12):
        stream = f"workflow-{n % 3}"
        await store.append(stream, n // 3, [new_event(n, kind="Even" if n % 2 == 0 else "Odd")])

    evens = await store.read_all(event_type="Even")
    second_stream = await store.read_all(stream_id="workflow-1")
    both = await store.read_all(event_type="Odd", stream_id="workflow-1")
    page = await store.read_all(after=evens[1].position, limit=2, event_type="Even")

    assert [msgspec.json.decode(e.data)["n"] for e in evens] == [0, 2, 4, 6, 8, 10]
    assert [msgspec.json.decode(e.data)["n"] for e in second_stream] == [1, 4, 7, 10]
    assert [msgspec.json.decode(e.data)["n"] for e in both] == [1, 7]
    assert [msgspec.json.decode(e.data)["n"] for e in page] == [4, 6]
    assert await store.read_all(event_type="Unknown") == []
    assert await store.read_all(stream_id="workflow-404") == []


@pytest.mark.anyio
async def test_the_payload_schema_version_is_kept(store: EventStore) -> None:
    await store.append(
        "workflow-1",
        0,
        [
            NewEvent(type="Old", data=b"{}"),
            NewEvent(type="New", data=b"{}", schema_version=3),
        ],
    )

    recorded = await store.read_stream("workflow-1")

    assert [e.schema_version for e in recorded] == [1, 3]


@pytest.mark.anyio
async def test_each_event_hash_covers_the_event_and_its_predecessors_hash(
    store: EventStore,
) -> None:
    await store.append("workflow-1", 0, [new_event(1), new_event(2)])
    await asyncio.gather(
        store.append("workflow-2", 0, [new_event(3)]),
        store.append("workflow-3", 0, [new_event(4), new_event(5)]),
    )

    log = await whole_log(store)

    previous = GENESIS
    for event in log:
        assert event.hash == event_hash(previous, **event.stored_fields()), event.position
        previous = event.hash
    assert len({e.hash for e in log}) == len(log)


@pytest.mark.anyio
async def test_imported_events_read_back_exactly_as_exported(
    store: EventStore, second_store: EventStore
) -> None:
    await store.append("workflow-1", 0, [new_event(1), new_event(2)])
    await store.append("workflow-2", 0, [new_event(3)])
    await store.append("workflow-1", 2, [new_event(4)])
    exported = await whole_log(store)

    await second_store.import_events(exported[:2])
    await second_store.import_events(exported[2:])

    assert await whole_log(second_store) == exported
    assert await second_store.head_position() == exported[-1].position
    # The imported log goes on like the original: same versions, next position, valid chain.
    result = await second_store.append("workflow-1", 3, [new_event(5)])
    assert result == AppendResult(version=4, position=5)
    appended = (await whole_log(second_store))[-1]
    assert appended.hash == event_hash(exported[-1].hash, **appended.stored_fields())


@pytest.mark.anyio
@pytest.mark.parametrize("flaw", ["edited", "reordered", "skipped", "wrong-version"])
async def test_an_import_that_does_not_continue_the_log_is_refused_whole(
    store: EventStore, second_store: EventStore, flaw: str
) -> None:
    await store.append("workflow-1", 0, [new_event(n) for n in range(1, 5)])
    exported = await whole_log(store)
    if flaw == "edited":
        exported[2] = msgspec.structs.replace(exported[2], data=b'{"n": 666}')
    elif flaw == "reordered":
        exported[1], exported[2] = exported[2], exported[1]
    elif flaw == "skipped":
        del exported[1]
    else:
        exported[3] = msgspec.structs.replace(exported[3], version=7)

    with pytest.raises(InvalidEvent):
        await second_store.import_events(exported)

    assert await whole_log(second_store) == []
    assert await second_store.head_position() == 0


# Atomic appends across streams --------------------------------------------------------------------


def part(stream_id: str, expected: int, *numbers: int) -> StreamAppend:
    """One stream's part of an `append_streams` call."""
    return StreamAppend(
        stream_id=stream_id, expected_version=expected, events=[new_event(n) for n in numbers]
    )


@pytest.mark.anyio
async def test_appends_to_several_streams_land_together_in_order_and_chained(
    store: EventStore,
) -> None:
    await store.append("workflow-1", 0, [new_event(0)])

    results = await store.append_streams(
        [part("workflow-1", 1, 1, 2), part("task-1", 0, 3), part("workflow-1", 3, 4)]
    )

    assert results == [
        AppendResult(version=3, position=3),
        AppendResult(version=1, position=4),
        AppendResult(version=4, position=5),
    ]
    log = await whole_log(store)
    assert_gap_free(log)
    assert [(e.stream_id, msgspec.json.decode(e.data)["n"]) for e in log[1:]] == [
        ("workflow-1", 1),
        ("workflow-1", 2),
        ("task-1", 3),
        ("workflow-1", 4),
    ]
    previous = GENESIS
    for event in log:
        assert event.hash == event_hash(previous, **event.stored_fields()), event.position
        previous = event.hash
    assert await store.head_position() == 5
    assert await store.wait_for_events(4, timeout=PROMPT)


@pytest.mark.anyio
@pytest.mark.parametrize("stale", ["first", "last", "repeated"])
async def test_one_conflicting_part_leaves_no_trace_of_any_part(
    store: EventStore, stale: str
) -> None:
    await store.append("workflow-1", 0, [new_event(1)])
    log_before = await whole_log(store)
    parts = {
        "first": [part("workflow-1", 0, 2), part("workflow-2", 0, 3)],
        "last": [part("workflow-2", 0, 3), part("workflow-3", 0, 4), part("workflow-1", 0, 5)],
        # The second part expects the version the first one left: 2, not 1.
        "repeated": [part("workflow-2", 0, 3), part("workflow-1", 1, 4), part("workflow-1", 1, 5)],
    }[stale]

    with pytest.raises(ConcurrencyConflict) as caught:
        await store.append_streams(parts)

    assert caught.value.stream_id == "workflow-1"
    assert await whole_log(store) == log_before
    assert await store.read_stream("workflow-2") == []
    assert await store.head_position() == 1
    assert await store.append("workflow-2", 0, [new_event(6)]) == AppendResult(
        version=1, position=2
    )


@pytest.mark.anyio
async def test_an_event_the_log_cannot_hold_refuses_every_part(store: EventStore) -> None:
    unstorable = NewEvent(type="Broken", data=b"\xff\xfe", metadata={})

    with pytest.raises(InvalidEvent):
        await store.append_streams(
            [
                part("workflow-1", 0, 1),
                StreamAppend(stream_id="workflow-2", expected_version=0, events=[unstorable]),
            ]
        )

    assert await whole_log(store) == []
