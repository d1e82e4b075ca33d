"""PostgreSQL read models store states packed (projections/packed_states.py), in flight too, beside
the aggregate's name in a column of its own; a process reads rows packed with a dictionary it
never saw; tables written before states were packed are dropped at open, to be rebuilt from the
log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from orchestrator.domain.states import State
from orchestrator.domain.workflow import Workflow
from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.projections.models import WORKFLOWS, Row
from orchestrator.projections.storage import ListQuery
from orchestrator.settings import parse_database
from tests.contract.conftest import connect_to_schema, make_storage, postgres_url

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]


def workflow_row(workflow_id: int, name: str, state: State) -> Row:
    settled = state is State.COMPLETE  # the engine has nothing left to do
    workflow = Workflow(
        workflow_id=workflow_id, name=name, state=state, version=1, finalized=settled
    )
    return WORKFLOWS.row(workflow_id, workflow)


async def connect(tmp_path: Path) -> asyncpg.Connection:
    database = parse_database(postgres_url(tmp_path))
    return await connect_to_schema(database)


@pytest.fixture
async def conn(tmp_path: Path) -> AsyncIterator[asyncpg.Connection]:
    connection = await connect(tmp_path)
    try:
        yield connection
    finally:
        await connection.close()


async def test_states_are_stored_packed_once_their_kind_has_a_settled_one(
    tmp_path: Path, conn: asyncpg.Connection
) -> None:
    made = make_storage("postgres", tmp_path)
    await made.store.open()
    try:
        tables = made.tables.storage()
        await tables.open()
        early = workflow_row(1, "first run", State.PREPARE)
        await tables.save([early], {}, 1, 0)
        done = workflow_row(2, "Nightly report", State.COMPLETE)
        running = workflow_row(3, "weekly backup", State.EXECUTE)
        assert not done.needs_engine and running.needs_engine
        await tables.save([done, running], {}, 3, 1)

        stored = {
            row["id"]: row
            for row in await conn.fetch("SELECT id, name, state, packed FROM projection_rows")
        }
        # Before any settled state of its kind, no dictionary: the state in flight is text.
        assert stored[1]["packed"] is None and stored[1]["state"] == early.state.decode()
        # The first settled state is the kind's dictionary; in flight or not, later states pack.
        for number, row in ((2, done), (3, running)):
            assert stored[number]["state"] is None
            assert len(stored[number]["packed"]) < len(row.state) // 4
        names = [stored[number]["name"] for number in (1, 2, 3)]
        assert names == ["first run", "Nightly report", "weekly backup"]
        assert await conn.fetchval("SELECT count(*) FROM projection_dictionaries") == 1

        found = await tables.load_rows(WORKFLOWS.kind, [1, 2, 3])
        assert found == {1: early.state, 2: done.state, 3: running.state}
        listed = await tables.list_rows(ListQuery(kind=WORKFLOWS.kind, name="NIGHTLY"))
        assert listed == [done.state]
    finally:
        await made.store.close()


async def test_a_process_reads_rows_packed_with_a_dictionary_it_never_saw(
    tmp_path: Path,
) -> None:
    first = make_storage("postgres", tmp_path)
    second = make_storage("postgres", tmp_path)  # another process on the same schema
    await first.store.open()
    await second.store.open()
    try:
        reader = second.tables.storage()
        await reader.open()  # opened before the dictionary exists
        writer = first.tables.storage()
        await writer.open()
        rows = [workflow_row(i, f"report {i}", State.COMPLETE) for i in (1, 2, 3)]
        await writer.save(rows, {"workflows": 3}, 3, 0)

        found = await reader.load_rows(WORKFLOWS.kind, [1, 2, 3])
        assert found == {row.id: row.state for row in rows}
        listed = await reader.list_rows(ListQuery(kind=WORKFLOWS.kind, limit=10))
        assert listed == [row.state for row in rows]
    finally:
        await second.store.close()
        await first.store.close()


async def test_a_row_whose_dictionary_is_gone_is_an_error_naming_it(
    tmp_path: Path, conn: asyncpg.Connection
) -> None:
    made = make_storage("postgres", tmp_path)
    await made.store.open()
    try:
        writer = made.tables.storage()
        await writer.open()
        await writer.save([workflow_row(1, "report", State.COMPLETE)], {}, 1, 0)
        await conn.execute("DELETE FROM projection_dictionaries")
        reader = made.tables.storage()
        await reader.open()
        with pytest.raises(StoreUnavailable, match="needs dictionary"):
            await reader.load_rows(WORKFLOWS.kind, [1])
    finally:
        await made.store.close()


async def test_tables_written_before_states_were_packed_are_dropped_to_be_rebuilt(
    tmp_path: Path, conn: asyncpg.Connection
) -> None:
    made = make_storage("postgres", tmp_path)
    await made.store.open()
    try:
        tables = made.tables.storage()
        await tables.open()
        await tables.save([workflow_row(1, "report", State.COMPLETE)], {"workflows": 1}, 1, 0)
        # As the release before packing left them: no encoding row, no packed column.
        await conn.execute("DELETE FROM projection_checkpoints WHERE name = 'postgres_encoding'")
        await conn.execute("DROP TABLE projection_dictionaries")
        await conn.execute("ALTER TABLE projection_rows DROP COLUMN packed")

        again = made.tables.storage()
        await again.open()
        assert await again.load_checkpoint() == 0  # the projector catches up from the start
        assert await again.load_rows(WORKFLOWS.kind, [1]) == {}
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'projection_rows'"
        )
        assert "packed" in {row[0] for row in columns}
    finally:
        await made.store.close()
