"""A rebuild's swap on PostgreSQL (projections/postgres_tables.py) beside a read-model save in
flight: the swap locks the checkpoints first, as the save does, so the two queue up instead of
each holding what the other waits for (PostgreSQL would break that deadlock after a second by
failing one of them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.backend import Backend
from orchestrator.eventstore.base import NewEvent, StreamAppend
from orchestrator.projections.tables import CHECKPOINT, GENERATION, LIVE
from orchestrator.settings import parse_database
from tests.contract.conftest import connect_to_schema, make_storage, postgres_url

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

SCRATCH = "rebuild_"


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[Backend]:
    made = make_storage("postgres", tmp_path)
    await made.store.open()
    try:
        yield made
    finally:
        await made.store.close()


async def test_a_swap_waits_for_a_save_in_flight_and_neither_deadlocks(
    backend: Backend, tmp_path: Path
) -> None:
    event = NewEvent(type="Noted", data=b'{"n":1}', metadata={"actor": "test"})
    await backend.store.append_streams(
        [StreamAppend(stream_id="note-1", expected_version=0, events=[event])]
    )
    head = await backend.store.head_position()
    live = backend.tables.storage(LIVE)
    await live.open()
    scratch = backend.tables.storage(SCRATCH)
    await scratch.open()
    await scratch.save([], {"notes": 1}, head, 0)
    await scratch.close()

    database = parse_database(postgres_url(tmp_path))
    conn = await connect_to_schema(database)
    try:
        # A save in flight, as PostgresProjectionStorage.save makes it: the checkpoint rows
        # first, the rows table after.
        transaction = conn.transaction()
        await transaction.start()
        await conn.fetch(
            f"SELECT name FROM {LIVE}checkpoints WHERE name = ANY($1::text[]) FOR UPDATE",
            [CHECKPOINT, GENERATION],
        )
        swap = asyncio.ensure_future(backend.tables.swap_in(SCRATCH, head))
        await asyncio.sleep(0.5)  # the swap is under way (and waits for the save)
        assert not swap.done()
        await conn.execute(
            f"INSERT INTO {LIVE}rows (kind, id, status, parent_id, deleted, needs_engine, "
            "name, state, packed, position) VALUES ('note', 1, 'DONE', NULL, false, false, "
            "'', '{}', NULL, 1)"
        )
        await transaction.commit()
        assert await asyncio.wait_for(swap, 10)
    finally:
        await conn.close()
    swapped = backend.tables.storage(LIVE)
    await swapped.open()
    assert await swapped.load_counters() == {"notes": 1}
    assert await swapped.load_generation() == 1
    await swapped.close()
    await live.close()
