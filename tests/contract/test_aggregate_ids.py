"""Ids of new aggregates: issued by the database where processes may share the log (PostgreSQL),
never twice and always past what is known; counted by the one process elsewhere."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from orchestrator.domain.commands import StartWorkflow
from orchestrator.eventstore.base import EventStore
from orchestrator.eventstore.postgres_schema import SCHEMA_VERSION
from orchestrator.runtime import build_runtime
from orchestrator.settings import Settings, parse_database
from tests.contract.conftest import connect_to_schema, make_storage, postgres_url
from tests.contract.postgres_schema_3 import make_schema_3

pytestmark = pytest.mark.anyio


async def test_issued_ids_increase_past_what_the_caller_knows(store: EventStore) -> None:
    first = await store.next_id("workflow", 0)
    if first is None:  # one process per log: the command service counts (tested in tests/engine)
        assert await store.next_id("workflow", 41) is None
        return

    second = await store.next_id("workflow", 0)
    past = await store.next_id("workflow", 41)
    other_kind = await store.next_id("task", 0)

    assert (first, second, past, other_kind) == (1, 2, 42, 1)
    assert await store.next_id("workflow", 5) == 43  # never back down to what a caller knows


@pytest.mark.postgres
async def test_processes_asking_at_once_never_get_the_same_id(tmp_path: Path) -> None:
    backends = [make_storage("postgres", tmp_path) for _ in range(3)]  # three pools, one schema
    for backend in backends:
        await backend.store.open()
    try:
        issued = await asyncio.gather(
            *(b.store.next_id("workflow", 0) for _ in range(40) for b in backends)
        )
    finally:
        for backend in backends:
            await backend.store.close()

    assert sorted(issued) == list(range(1, 121))  # type: ignore[type-var]


@pytest.mark.postgres
async def test_a_runtime_on_postgresql_numbers_workflows_from_the_database(
    tmp_path: Path,
) -> None:
    settings = Settings(database_url=postgres_url(tmp_path), task_time_scale=0, log_file="")
    ids = []
    for _ in range(2):  # a restart continues the numbering
        runtime = build_runtime(settings)
        await runtime.start()
        try:
            for n in range(2):
                outcome = await runtime.coordinator.start(StartWorkflow(workflow_id=0, name=f"{n}"))
                ids.append(outcome.workflow.workflow_id)
        finally:
            await runtime.stop()

    assert ids == [1, 2, 3, 4]


@pytest.mark.postgres
async def test_a_log_of_schema_1_gains_the_id_counters_and_leases_at_open(tmp_path: Path) -> None:
    database = parse_database(postgres_url(tmp_path))
    assert database.url is not None and database.schema is not None
    await make_schema_3(database.url, database.schema)
    conn = await connect_to_schema(database)
    try:  # as a release before the counters left it
        await conn.execute("DROP TABLE aggregate_ids, leases, processes")
        await conn.execute("UPDATE schema_version SET version = 1")
    finally:
        await conn.close()

    reopened = make_storage("postgres", tmp_path)
    await reopened.store.open()
    try:
        assert await reopened.store.next_id("workflow", 7) == 8
    finally:
        await reopened.store.close()
    conn = await connect_to_schema(database)
    try:
        assert await conn.fetchval("SELECT version FROM schema_version") == SCHEMA_VERSION
        assert await conn.fetchval("SELECT to_regclass('leases') IS NOT NULL")
    finally:
        await conn.close()
