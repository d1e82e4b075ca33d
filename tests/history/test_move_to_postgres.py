"""Moving a SQLite store to PostgreSQL with the tools, as the README's "Production" section says:
`export` from the file, `import` into a new schema, `verify` there, and a server on PostgreSQL
answers what the SQLite server answered. The tools that read a log refuse a schema without
one rather than create it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from orchestrator.settings import parse_database, redact_url
from tests.contract.conftest import _drop_test_schemas as _drop_test_schemas
from tests.contract.conftest import postgres_url
from tests.e2e.conftest import ServerProcess, free_port, run_on
from tests.history.conftest import (
    RecordedRun,
    get_workflow,
    json_of,
    run_cli,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def test_a_sqlite_store_moves_to_postgresql_with_export_and_import(
    recorded_run: RecordedRun, database: Path, tmp_path: Path
) -> None:
    url = postgres_url(tmp_path)
    exported = run_cli(database, "export")
    assert exported.returncode == 0, exported.stderr

    imported = run_on(url, tmp_path, "import", stdin=exported.stdout)
    verified = run_on(url, tmp_path, "verify")
    again = run_on(url, tmp_path, "export")

    assert imported.returncode == 0, imported.stderr
    assert f"imported {recorded_run.head} events into " in imported.stderr
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith(f"checked {recorded_run.head} events ")
    assert again.stdout == exported.stdout  # the same events, positions, times and hashes

    workdir = tmp_path / "server"
    workdir.mkdir()
    server = ServerProcess(workdir=workdir, port=free_port(), overrides={"DATABASE_URL": url})
    server.start()
    try:
        with server.client() as client:
            workflows = {
                workflow_id: get_workflow(client, workflow_id)
                for workflow_id in recorded_run.workflows
            }
            stats = json_of(client.get("/execution/stats"), 200)
            started = json_of(client.post("/workflow/start", json={"name": "on postgres"}), 201)
    finally:
        server.stop()
    # The log the server added to (and checkpointed) checked in three processes, each reading
    # every row through the server and checking the streams of its part.
    alone = run_on(url, tmp_path, "verify", "--processes", "1")
    in_parts = run_on(url, tmp_path, "verify", "--processes", "3")

    assert workflows == recorded_run.workflows
    assert stats["workflows"] == recorded_run.stats["workflows"]
    # New ids continue past the imported ones.
    assert started["workflow_id"] > max(recorded_run.workflow_ids.values())
    assert alone.returncode == 0 and in_parts.returncode == 0, alone.stdout + in_parts.stdout
    first, *rest = alone.stdout.splitlines()
    assert first.endswith(" events/s)") and rest[0].startswith("the log is intact")
    assert rest[1].startswith("anchors: ") and "last at position" in rest[1], rest
    parts_first, *parts_rest = in_parts.stdout.splitlines()
    assert parts_first.endswith(" events/s, 3 processes)")
    assert parts_first.split(" in ")[:2] == first.split(" in ")[:2]  # the events and streams
    assert parts_rest == rest


@pytest.mark.parametrize("command", [["verify"], ["export"], ["replay", "1"]])
def test_a_schema_without_a_log_is_refused_and_not_created(
    tmp_path: Path, command: list[str]
) -> None:
    url = postgres_url(tmp_path)  # a schema nobody made

    ran = run_on(url, tmp_path, *command)

    database = parse_database(url)
    assert ran.returncode == 1
    assert ran.stderr.strip().splitlines()[-1] == (
        f"orchestrator: no log in {redact_url(str(database.url))} (schema {database.schema})"
    )
    assert not asyncio.run(schema_exists(url))  # a dropped schema stays gone


async def schema_exists(url: str) -> bool:
    """Whether the test's schema is in the database, asked around the code under test."""
    database = parse_database(url)
    conn = await asyncpg.connect(str(database.url))
    try:
        found = await conn.fetchval(
            "SELECT 1 FROM pg_namespace WHERE nspname = $1", database.schema
        )
    finally:
        await conn.close()
    return found is not None
