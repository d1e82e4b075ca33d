"""Idempotency keys beside the log: every backend records a key with its append, atomically.

Each test runs once per backend (see `conftest.py`). A key is written by the append that records
its command, in the same transaction, or not at all; its answer is kept once saved; expired keys
are purged; on SQLite they survive a restart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from orchestrator.eventstore.base import EventStore, NewEvent
from orchestrator.eventstore.errors import ConcurrencyConflict, InvalidEvent
from orchestrator.eventstore.keys import IdempotencyClaim, IdempotencyRecord
from orchestrator.eventstore.sqlite import SQLiteEventStore

HASH = bytes(range(32))
OTHER_HASH = bytes(32)


def event(n: int) -> NewEvent:
    """A small event."""
    return NewEvent(type="Happened", data=msgspec.json.encode({"n": n}), metadata={"n": n})


def claim(
    key: str = "key-1", created_at: float = 1000.0, request_hash: bytes = HASH
) -> IdempotencyClaim:
    """A claim of `key` made at `created_at`."""
    return IdempotencyClaim(key=key, request_hash=request_hash, created_at=created_at)


@pytest.mark.anyio
async def test_an_append_with_a_key_records_where_its_command_landed(store: EventStore) -> None:
    await store.append("workflow-9", 0, [event(0)])

    result = await store.append("workflow-1", 0, [event(1), event(2)], idempotency=claim())

    assert await store.read_idempotency("key-1") == IdempotencyRecord(
        key="key-1",
        request_hash=HASH,
        created_at=1000.0,
        stream_id="workflow-1",
        version=2,
        position=result.position,
    )
    assert result.position == 3


@pytest.mark.anyio
async def test_an_unknown_key_and_an_append_without_one_record_nothing(store: EventStore) -> None:
    await store.append("workflow-1", 0, [event(1)])

    assert await store.read_idempotency("key-1") is None


@pytest.mark.anyio
async def test_a_conflicting_append_records_neither_events_nor_key(store: EventStore) -> None:
    await store.append("workflow-1", 0, [event(1)])

    with pytest.raises(ConcurrencyConflict):
        await store.append("workflow-1", 0, [event(2)], idempotency=claim())

    assert await store.read_idempotency("key-1") is None
    assert await store.head_position() == 1


@pytest.mark.anyio
async def test_a_refused_event_records_no_key(store: EventStore) -> None:
    unstorable = NewEvent(type="Bad", data=b"\xff\xfe", metadata={})

    with pytest.raises(InvalidEvent):
        await store.append("workflow-1", 0, [unstorable], idempotency=claim())

    assert await store.read_idempotency("key-1") is None


@pytest.mark.anyio
async def test_in_one_group_commit_only_the_appends_that_land_record_their_keys(
    store: EventStore,
) -> None:
    await store.append("workflow-1", 0, [event(1)])

    outcomes = await asyncio.gather(
        store.append("workflow-2", 0, [event(2)], idempotency=claim("lands")),
        store.append("workflow-1", 0, [event(3)], idempotency=claim("conflicts")),
        store.append("workflow-3", 0, [event(4)], idempotency=claim("lands too")),
        return_exceptions=True,
    )

    assert isinstance(outcomes[1], ConcurrencyConflict)
    landed = await store.read_idempotency("lands")
    landed_too = await store.read_idempotency("lands too")
    assert landed is not None and (landed.stream_id, landed.version) == ("workflow-2", 1)
    assert landed_too is not None and landed_too.stream_id == "workflow-3"
    assert await store.read_idempotency("conflicts") is None


@pytest.mark.anyio
async def test_the_answer_is_kept_beside_the_key_of_its_own_request(store: EventStore) -> None:
    await store.append("workflow-1", 0, [event(1)], idempotency=claim())

    await store.save_idempotent_answer("key-1", OTHER_HASH, 500, b"not this request's")
    unanswered = await store.read_idempotency("key-1")
    await store.save_idempotent_answer("key-1", HASH, 201, b'{"workflow_id":1}')
    answered = await store.read_idempotency("key-1")

    assert unanswered is not None and (unanswered.status, unanswered.body) == (None, None)
    assert answered is not None and (answered.status, answered.body) == (201, b'{"workflow_id":1}')


@pytest.mark.anyio
async def test_an_empty_answer_is_kept_as_an_empty_body(store: EventStore) -> None:
    await store.append("workflow-1", 0, [event(1)], idempotency=claim())

    await store.save_idempotent_answer("key-1", HASH, 204, b"")

    record = await store.read_idempotency("key-1")
    assert record is not None and (record.status, record.body) == (204, b"")


@pytest.mark.anyio
async def test_purge_forgets_only_the_keys_created_before_the_cutoff(store: EventStore) -> None:
    for n, created_at in enumerate((100.0, 199.5, 200.0, 300.0)):
        key_claim = claim(f"key-{n}", created_at)
        await store.append(f"workflow-{n}", 0, [event(n)], idempotency=key_claim)

    purged = await store.purge_idempotency(200.0)

    assert purged == 2
    assert [await store.read_idempotency(f"key-{n}") is None for n in range(4)] == [
        True,
        True,
        False,
        False,
    ]
    assert await store.head_position() == 4, "purging keys never touches the log"


@pytest.mark.anyio
async def test_a_new_claim_replaces_the_expired_row_of_its_key(store: EventStore) -> None:
    await store.append("workflow-1", 0, [event(1)], idempotency=claim(created_at=1.0))
    await store.save_idempotent_answer("key-1", HASH, 201, b"old")

    await store.append("workflow-2", 0, [event(2)], idempotency=claim(created_at=5000.0))

    record = await store.read_idempotency("key-1")
    assert record is not None
    assert (record.stream_id, record.created_at, record.status) == ("workflow-2", 5000.0, None)


@pytest.mark.anyio
async def test_sqlite_keys_and_answers_survive_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "keys.db")
    first = SQLiteEventStore(path)
    await first.open()
    try:
        await first.append("workflow-1", 0, [event(1)], idempotency=claim())
        await first.append("workflow-2", 0, [event(2)], idempotency=claim("unanswered"))
        await first.save_idempotent_answer("key-1", HASH, 201, b"{}")
    finally:
        await first.close()

    second = SQLiteEventStore(path)
    await second.open()
    try:
        answered = await second.read_idempotency("key-1")
        unanswered = await second.read_idempotency("unanswered")
    finally:
        await second.close()

    assert answered is not None and (answered.status, answered.body) == (201, b"{}")
    assert unanswered is not None
    assert (unanswered.stream_id, unanswered.version, unanswered.status) == ("workflow-2", 1, None)
