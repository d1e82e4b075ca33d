"""`orchestrator export` and `orchestrator import`: a real server's log copied to a new database.

The copy must hold the same events (positions, times, hashes), pass verify, and answer the same
reads as the server that wrote the original. Import refuses a non-empty target and any line that
does not continue the chain, and then stores nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.eventstore.base import NewEvent
from orchestrator.eventstore.sqlite import SQLiteEventStore
from tests.history.conftest import (
    RecordedRun,
    ServeDatabase,
    database_path,
    event_rows,
    get_workflow,
    head_of,
    json_of,
    projection_rows,
    run_cli,
)

pytestmark = pytest.mark.e2e


def export_log(database: Path) -> str:
    """The log of `database` as JSON lines, through `orchestrator export`."""
    exported = run_cli(database, "export")
    assert exported.returncode == 0, exported.stderr
    return exported.stdout


def import_log(database: Path, lines: str) -> None:
    """`orchestrator import` of `lines` into `database`, which must succeed."""
    imported = run_cli(database, "import", stdin=lines)
    assert imported.returncode == 0, imported.stderr


def test_export_writes_one_line_per_event_in_position_order(
    recorded_run: RecordedRun, database: Path
) -> None:
    lines = [json.loads(line) for line in export_log(database).splitlines()]

    assert [line["position"] for line in lines] == list(range(1, recorded_run.head + 1))
    assert [
        (
            line["position"],
            line["stream_id"],
            line["version"],
            line["type"],
            line["data"],
            line["schema_version"],
            line["hash"],
        )
        for line in lines
    ] == [(row[0], row[1], row[2], row[3], row[4], row[7], row[8]) for row in event_rows(database)]


def test_an_import_into_a_new_database_copies_every_event_exactly(
    recorded_run: RecordedRun, database: Path, tmp_path: Path
) -> None:
    copy = database_path(tmp_path, "copy")

    imported = run_cli(copy, "import", stdin=export_log(database))

    assert imported.returncode == 0, imported.stderr
    assert f"imported {recorded_run.head} events into {copy}" in imported.stderr
    assert event_rows(copy) == event_rows(database)
    assert projection_rows(copy) == projection_rows(database)
    verified = run_cli(copy, "verify")
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.startswith(f"checked {recorded_run.head} events ")


def test_a_server_on_the_copy_answers_what_the_original_server_answered(
    recorded_run: RecordedRun, database: Path, tmp_path: Path, serve: ServeDatabase
) -> None:
    copy = database_path(tmp_path, "copy")
    import_log(copy, export_log(database))

    server = serve(copy)
    with server.client() as client:
        workflows = {
            workflow_id: get_workflow(client, workflow_id) for workflow_id in recorded_run.workflows
        }
        deleted = client.get(f"/workflow/{recorded_run.workflow_ids['deleted']}")
        task = json_of(client.get(f"/tasks/{recorded_run.task_id}"), 200)
        stats = json_of(client.get("/execution/stats"), 200)
    server.stop()

    assert workflows == recorded_run.workflows
    assert deleted.status_code == 404
    assert task == recorded_run.task
    assert stats["workflows"] == recorded_run.stats["workflows"]
    assert head_of(copy) == recorded_run.head


def test_an_import_into_a_database_that_has_events_is_refused_and_changes_nothing(
    database: Path,
) -> None:
    exported = export_log(database)
    events, rows = event_rows(database), projection_rows(database)

    imported = run_cli(database, "import", stdin=exported)

    assert imported.returncode == 1
    assert imported.stderr.strip() == (
        "orchestrator: the target log is not empty; import only into a new database"
    )
    assert event_rows(database) == events
    assert projection_rows(database) == rows


def tamper_hash(item: dict[str, Any]) -> None:
    """Give the event a hash that is well formed but wrong."""
    item["hash"] = "0" * 64


def tamper_data(item: dict[str, Any]) -> None:
    """Change one value in the payload and keep the old hash."""
    assert '"at":"20' in item["data"]
    item["data"] = item["data"].replace('"at":"20', '"at":"19', 1)


@pytest.mark.parametrize("tamper", [tamper_hash, tamper_data], ids=["hash", "data"])
def test_a_line_with_a_tampered_field_is_refused_and_nothing_is_imported(
    database: Path, tmp_path: Path, tamper: Any
) -> None:
    lines = export_log(database).splitlines()
    middle = len(lines) // 2
    item = json.loads(lines[middle])
    tamper(item)
    lines[middle] = json.dumps(item)
    copy = database_path(tmp_path, "copy")

    imported = run_cli(copy, "import", stdin="\n".join(lines) + "\n")

    assert imported.returncode == 1
    assert imported.stderr.strip() == (
        f"orchestrator: event at position {item['position']} does not continue the chain"
    )
    assert head_of(copy) == 0


def test_a_missing_line_is_refused_and_nothing_is_imported(database: Path, tmp_path: Path) -> None:
    lines = export_log(database).splitlines()
    following = json.loads(lines[len(lines) // 2 + 1])
    del lines[len(lines) // 2]
    copy = database_path(tmp_path, "copy")

    imported = run_cli(copy, "import", stdin="\n".join(lines) + "\n")

    assert imported.returncode == 1
    assert f"event at position {following['position']} " in imported.stderr
    assert head_of(copy) == 0


def test_a_line_that_is_not_an_exported_event_is_refused_naming_its_line(
    database: Path, tmp_path: Path
) -> None:
    lines = export_log(database).splitlines()
    lines[2] = '{"position": "three"}'
    copy = database_path(tmp_path, "copy")

    imported = run_cli(copy, "import", stdin="\n".join(lines) + "\n")

    assert imported.returncode == 1
    assert imported.stderr.startswith("orchestrator: line 3 is not an exported event: ")
    assert head_of(copy) == 0


async def write_a_long_log(database: Path, streams: int, events_per_stream: int) -> int:
    """Append `streams` x `events_per_stream` small events through the store; the head."""
    store = SQLiteEventStore(str(database))
    await store.open()
    try:
        for number in range(1, streams + 1):
            batch = [
                NewEvent(type="Noted", data=b'{"n":%d}' % index, metadata={"actor": "test"})
                for index in range(events_per_stream)
            ]
            await store.append(f"note-{number}", 0, batch)
        return await store.head_position()
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_bad_line_late_in_a_long_export_leaves_the_new_database_empty(
    tmp_path: Path,
) -> None:
    source = database_path(tmp_path, "long")
    head = await write_a_long_log(source, streams=60, events_per_stream=100)
    assert head == 6000
    lines = export_log(source).splitlines()
    item = json.loads(lines[5500])
    tamper_hash(item)
    lines[5500] = json.dumps(item)
    copy = database_path(tmp_path, "copy")

    imported = run_cli(copy, "import", stdin="\n".join(lines) + "\n")

    assert imported.returncode == 1
    assert f"event at position {item['position']} does not continue the chain" in imported.stderr
    assert head_of(copy) == 0
