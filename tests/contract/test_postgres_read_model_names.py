"""PostgreSQL read models keep each aggregate's name in a column of its own (a search by name
reads that column, not every row's JSON); tables written before it gain it, filled, at open."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from orchestrator.domain.states import State
from orchestrator.domain.workflow import Workflow
from orchestrator.projections.models import WORKFLOWS
from orchestrator.projections.storage import ListQuery
from orchestrator.settings import parse_database
from tests.contract.conftest import make_storage, postgres_url

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]


async def test_read_models_written_before_the_name_column_gain_it_at_open(
    tmp_path: Path,
) -> None:
    made = make_storage("postgres", tmp_path)
    await made.store.open()
    try:
        tables = made.tables.storage()
        await tables.open()
        rows = [
            WORKFLOWS.row(i, Workflow(workflow_id=i, name=name, state=State.INIT, version=1))
            for i, name in ((1, "Nightly report"), (2, "weekly backup"))
        ]
        await tables.save(rows, {}, 2, 0)
        database = parse_database(postgres_url(tmp_path))
        assert database.url is not None and database.schema is not None
        conn = await asyncpg.connect(database.url, server_settings={"search_path": database.schema})
        try:  # as a release before the column left the table
            await conn.execute("ALTER TABLE projection_rows DROP COLUMN name")
        finally:
            await conn.close()

        again = made.tables.storage()
        await again.open()
        found = await again.list_rows(ListQuery(kind=WORKFLOWS.kind, name="NIGHTLY"))
        assert [WORKFLOWS.decode_state(data).name for data in found] == ["Nightly report"]
    finally:
        await made.store.close()
