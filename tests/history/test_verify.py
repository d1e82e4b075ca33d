"""`orchestrator verify`: a real server's log passes; every kind of tampering is caught.

Tampering is done the way someone with the file would do it: the sqlite3 module, with the
append-only triggers dropped first. An illegal history with a correct hash chain is written
through the store's own append path, or with hashes computed by `chain.event_hash`.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from orchestrator.domain.events import WorkflowTransitioned, encode_event, stream_id
from orchestrator.domain.states import State, Trigger
from orchestrator.domain.upcasting import CURRENT_SCHEMA
from orchestrator.eventstore.base import NewEvent
from orchestrator.eventstore.chain import event_hash
from orchestrator.eventstore.sqlite import SQLiteEventStore
from tests.history.conftest import (
    RecordedRun,
    connect,
    drop_trigger,
    event_rows,
    head_of,
    payload_of,
    run_cli,
)

pytestmark = pytest.mark.e2e


def the_event(database: Path, stream: str, event_type: str, state: str) -> tuple[Any, ...]:
    """The first stored row of `stream` with this type whose payload is about `state`."""
    for row in event_rows(database):
        if row[1] == stream and row[3] == event_type and payload_of(row).get("state") == state:
            return row
    raise AssertionError(f"no {event_type} for {state} in {stream}")


def first_bad_line(stdout: str) -> str:
    """The line of verify's report that names the first bad position."""
    found = [line for line in stdout.splitlines() if line.startswith("FIRST BAD POSITION: ")]
    assert len(found) == 1, stdout
    return found[0]


def test_the_log_a_real_server_wrote_is_intact(
    recorded_run: RecordedRun, database: Path, processes: str
) -> None:
    streams = {row[1] for row in event_rows(database)}

    verified = run_cli(database, "verify", "--processes", processes)

    assert verified.returncode == 0, verified.stdout + verified.stderr
    lines = verified.stdout.splitlines()
    assert lines[0].startswith(f"checked {recorded_run.head} events in {len(streams)} streams ")
    by = "" if processes == "1" else f", {processes} processes"
    assert lines[0].endswith(f" events/s{by})")
    assert lines[1] == ("the log is intact: positions, versions, payloads, hash chain, transitions")


def test_a_payload_edited_in_the_file_is_reported_at_its_position(
    recorded_run: RecordedRun, database: Path, processes: str
) -> None:
    stream = stream_id(recorded_run.workflow_ids["automatic"])
    edited = the_event(database, stream, "StepSucceeded", "EXECUTE")
    assert '"computation_result":285' in edited[4]
    drop_trigger(database, "events_refuse_update")
    with connect(database) as connection:
        connection.execute(
            "UPDATE events SET data = replace(data, '\"computation_result\":285', "
            "'\"computation_result\":286') WHERE position = ?",
            (edited[0],),
        )
    assert '"computation_result":286' in event_rows(database)[edited[0] - 1][4]

    verified = run_cli(database, "verify", "--processes", processes)

    assert verified.returncode == 1
    assert first_bad_line(verified.stdout) == (
        f"FIRST BAD POSITION: {edited[0]} ({stream}): "
        "hash chain broken: the event's content or its hash was changed"
    )
    assert "also at" not in verified.stdout


def test_an_edited_hash_is_reported_at_the_edited_event(
    recorded_run: RecordedRun, database: Path, processes: str
) -> None:
    position = recorded_run.head // 2
    drop_trigger(database, "events_refuse_update")
    with connect(database) as connection:
        connection.execute("UPDATE events SET hash = ? WHERE position = ?", ("f" * 64, position))

    verified = run_cli(database, "verify", "--processes", processes)

    assert verified.returncode == 1
    assert first_bad_line(verified.stdout).startswith(f"FIRST BAD POSITION: {position} ")


def test_a_removed_event_breaks_the_chain_and_its_streams_versions(
    recorded_run: RecordedRun, database: Path, processes: str
) -> None:
    stream = stream_id(recorded_run.workflow_ids["automatic"])
    removed = the_event(database, stream, "StepStarted", "PREPARE")
    following = min(row[0] for row in event_rows(database) if row[0] > removed[0])
    drop_trigger(database, "events_refuse_delete")
    with connect(database) as connection:
        connection.execute("DELETE FROM events WHERE position = ?", (removed[0],))

    verified = run_cli(database, "verify", "--processes", processes)

    assert verified.returncode == 1
    assert first_bad_line(verified.stdout).startswith(f"FIRST BAD POSITION: {following} ")
    version = removed[2]
    assert f"({stream}): version {version + 1} where {version} was expected" in verified.stdout


@pytest.mark.anyio
async def test_an_illegal_transition_appended_through_the_store_is_caught(
    recorded_run: RecordedRun, database: Path, processes: str
) -> None:
    stream = stream_id(recorded_run.workflow_ids["automatic"])
    illegal = WorkflowTransitioned(
        at=datetime.now(UTC),
        from_state=State.COMPLETE,
        to_state=State.INIT,
        trigger=Trigger.RETRY,
    )
    store = SQLiteEventStore(str(database))
    await store.open()
    try:
        version = len(await store.read_stream(stream))
        appended = await store.append(
            stream,
            version,
            [
                NewEvent(
                    type="WorkflowTransitioned",
                    data=encode_event(illegal),
                    metadata={"actor": "test"},
                    schema_version=CURRENT_SCHEMA,
                )
            ],
        )
    finally:
        await store.close()

    verified = run_cli(database, "verify", "--processes", processes)

    assert verified.returncode == 1
    assert first_bad_line(verified.stdout) == (
        f"FIRST BAD POSITION: {appended.position} ({stream}): illegal WorkflowTransitioned: "
        "COMPLETE --retry--> INIT is not in the transition table"
    )
    assert "hash chain" not in verified.stdout


def insert_with_a_correct_hash(database: Path, stream: str, event_type: str, data: str) -> int:
    """Add an event after the head with sqlite3, hashed by `chain.event_hash`; its position."""
    rows = event_rows(database)
    last = rows[-1]
    fields: dict[str, Any] = {
        "position": last[0] + 1,
        "stream_id": stream,
        "version": sum(1 for row in rows if row[1] == stream) + 1,
        "type": event_type,
        "data": data,
        "metadata": '{"actor":"forger"}',
        "recorded_at": datetime(2030, 1, 1, 12, 0, 0, 1, tzinfo=UTC).isoformat(),
        "schema_version": CURRENT_SCHEMA,
    }
    with connect(database) as connection:
        connection.execute(
            "INSERT INTO events (position, stream_id, version, type, data, metadata, "
            "recorded_at, schema_version, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*fields.values(), event_hash(last[8], **fields)),
        )
    position: int = fields["position"]
    return position


def test_a_task_outcome_with_no_run_going_is_caught_though_its_hash_is_right(
    recorded_run: RecordedRun, database: Path, processes: str
) -> None:
    stream = f"task-{recorded_run.task_id}"
    forged = {
        "type": "TaskRunSucceeded",
        "at": "2030-01-01T00:00:00Z",
        "result": {"status": "computed", "forged": True},
        "duration": 0.0,
    }
    position = insert_with_a_correct_hash(
        database, stream, "TaskRunSucceeded", msgspec.json.encode(forged).decode()
    )

    verified = run_cli(database, "verify", "--processes", processes)

    assert verified.returncode == 1
    assert first_bad_line(verified.stdout) == (
        f"FIRST BAD POSITION: {position} ({stream}): illegal TaskRunSucceeded: "
        "a run outcome while COMPLETED"
    )


def test_a_payload_that_does_not_decode_is_caught_though_its_hash_is_right(
    recorded_run: RecordedRun, database: Path, processes: str
) -> None:
    stream = stream_id(recorded_run.workflow_ids["waiting"])
    position = insert_with_a_correct_hash(
        database, stream, "StepStarted", '{"type":"StepStarted","state":"EXECUTE"}'
    )

    verified = run_cli(database, "verify", "--processes", processes)

    assert verified.returncode == 1
    line = first_bad_line(verified.stdout)
    assert line.startswith(
        f"FIRST BAD POSITION: {position} ({stream}): payload does not decode as StepStarted: "
    )
    assert "`at`" in line or "`task`" in line


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("UPDATE events SET data = '{}' WHERE position = 3", "UPDATE refused"),
        ("UPDATE events SET hash = 'x'", "UPDATE refused"),
        ("DELETE FROM events WHERE position = 3", "DELETE refused"),
        ("DELETE FROM events", "DELETE refused"),
        (
            "INSERT OR REPLACE INTO events SELECT position, stream_id, version, type, '{}', "
            "metadata, recorded_at, schema_version, hash FROM events WHERE position = 3",
            "an insert may not replace an event",
        ),
    ],
)
def test_the_database_refuses_to_change_or_remove_an_event(
    database: Path, statement: str, refusal: str
) -> None:
    before = event_rows(database)

    with connect(database) as connection, pytest.raises(sqlite3.IntegrityError) as refused:
        connection.execute(statement)

    assert str(refused.value) == f"events are append-only: {refusal}"
    assert event_rows(database) == before
    assert head_of(database) == len(before)
    assert run_cli(database, "verify").returncode == 0
