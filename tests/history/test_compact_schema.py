"""A SQLite file written by the release before the compact rows (event schema 2, read models of
JSON text) opens with this one: its events are converted in place to schema 3
(eventstore/sqlite_codec.py), its read models rebuilt in the packed encoding
(projections/packed_states.py), and every read, `verify` and `replay` give what they gave before.

The old file is made from a real server's run: its events rewritten with the schema-2 statements
below (every field as the text the chain hashes), its read-model tables in the shape they had.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from orchestrator.eventstore.sqlite_schema import SCHEMA_VERSION, stored_events
from tests.history.conftest import (
    RecordedRun,
    ServeDatabase,
    connect,
    event_rows,
    get_workflow,
    json_of,
    projection_rows,
    run_cli,
    state_codec,
)

pytestmark = pytest.mark.e2e

#: The events table and its triggers as schema 2 created them (git c8780e7).
SCHEMA_2 = [
    """CREATE TABLE events (
        position    INTEGER PRIMARY KEY,
        stream_id   TEXT    NOT NULL,
        version     INTEGER NOT NULL CHECK (version >= 1),
        type        TEXT    NOT NULL,
        data        TEXT    NOT NULL,
        metadata    TEXT    NOT NULL,
        recorded_at TEXT    NOT NULL,
        schema_version INTEGER NOT NULL DEFAULT 1,
        hash        TEXT    NOT NULL,
        UNIQUE (stream_id, version)
    )""",
    """CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE refused'); END""",
    """CREATE TRIGGER events_refuse_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'events are append-only: DELETE refused'); END""",
    """CREATE TRIGGER events_refuse_replace BEFORE INSERT ON events
    WHEN EXISTS (SELECT 1 FROM events WHERE position = NEW.position)
        OR EXISTS (SELECT 1 FROM events WHERE stream_id = NEW.stream_id AND version = NEW.version)
    BEGIN SELECT RAISE(ABORT, 'events are append-only: an insert may not replace an event'); END""",
]
#: The read-model rows table as that release created it (states as JSON text).
ROWS_BEFORE = """CREATE TABLE projection_rows (
    kind         TEXT    NOT NULL,
    id           INTEGER NOT NULL,
    status       TEXT    NOT NULL,
    parent_id    INTEGER,
    deleted      INTEGER NOT NULL,
    needs_engine INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    state        TEXT    NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID"""


def make_schema_2(database: Path) -> None:
    """Rewrite the file as the release before the compact rows left it."""
    with connect(database) as connection:
        events = stored_events(connection)
        states = state_codec(connection)
        rows = connection.execute(
            "SELECT kind, id, status, parent_id, deleted, needs_engine, position, state "
            "FROM projection_rows"
        ).fetchall()
        connection.execute("BEGIN")
        for table in ("events", "event_types", "event_metadata", "event_dictionaries"):
            connection.execute(f"DROP TABLE {table}")
        for statement in SCHEMA_2:
            connection.execute(statement)
        connection.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.position,
                    e.stream_id,
                    e.version,
                    e.type,
                    e.data.decode(),
                    msgspec.json.encode(e.metadata).decode(),
                    e.recorded_at.isoformat(),
                    e.schema_version,
                    e.hash,
                )
                for e in events
            ],
        )
        connection.execute("DROP TABLE projection_rows")
        connection.execute("DROP TABLE projection_dictionaries")
        connection.execute(ROWS_BEFORE)
        connection.executemany(
            "INSERT INTO projection_rows VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(*row[:7], states.unpack(row[7]).decode()) for row in rows],
        )
        connection.execute("DELETE FROM projection_checkpoints WHERE name = 'sqlite_encoding'")
        connection.execute("PRAGMA user_version = 2")
        connection.execute("COMMIT")


def stored_forms(database: Path) -> dict[str, set[str]]:
    """The SQLite types each compact column of the events table holds."""
    columns = ("type", "data", "metadata", "recorded_at", "hash")
    with connect(database) as connection:
        return {
            column: {row[0] for row in connection.execute(f"SELECT typeof({column}) FROM events")}
            for column in columns
        }


def test_a_file_of_schema_2_is_converted_and_reads_verifies_and_replays_as_before(
    recorded_run: RecordedRun, database: Path, serve: ServeDatabase
) -> None:
    events, rows = event_rows(database), projection_rows(database)
    make_schema_2(database)
    assert event_rows(database) == events  # the old file holds the same fields, as text
    with connect(database) as connection:
        assert connection.execute("SELECT typeof(hash) FROM events").fetchone() == ("text",)

    server = serve(database)
    with server.client() as client:
        workflows = {
            workflow_id: get_workflow(client, workflow_id) for workflow_id in recorded_run.workflows
        }
        listed = json_of(client.get("/workflows"), 200)
        task = json_of(client.get(f"/tasks/{recorded_run.task_id}"), 200)
        tasks = json_of(client.get("/tasks"), 200)
        stats = json_of(client.get("/execution/stats"), 200)
    server.stop()

    assert workflows == recorded_run.workflows
    assert {item["id"] for item in listed} == set(recorded_run.workflows)
    assert task == recorded_run.task
    assert [item["id"] for item in tasks] == [recorded_run.task_id]
    assert stats["workflows"] == recorded_run.stats["workflows"]
    with connect(database) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        encoding = connection.execute(
            "SELECT position FROM projection_checkpoints WHERE name = 'sqlite_encoding'"
        ).fetchone()
    assert encoding == (1,)
    assert stored_forms(database) == {
        "type": {"integer"},
        "data": {"blob"},  # a dictionary was learned from the old rows
        "metadata": {"integer"},
        "recorded_at": {"integer"},
        "hash": {"blob"},
    }
    assert event_rows(database) == events
    assert projection_rows(database) == rows
    verified = run_cli(database, "verify")
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.startswith(f"checked {recorded_run.head} events ")
    replayed = run_cli(database, "replay", str(recorded_run.workflow_ids["automatic"]))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr


def test_an_event_edited_before_the_conversion_still_fails_verify_after_it(
    database: Path,
) -> None:
    make_schema_2(database)
    with connect(database) as connection:
        connection.execute("DROP TRIGGER events_refuse_update")
        data: str = connection.execute("SELECT data FROM events WHERE position = 3").fetchone()[0]
        edited: dict[str, Any] = {**json.loads(data), "forged": True}
        connection.execute(
            "UPDATE events SET data = ? WHERE position = 3",
            (json.dumps(edited, separators=(",", ":")),),
        )

    verified = run_cli(database, "verify")

    assert verified.returncode == 1
    assert "FIRST BAD POSITION: 3 " in verified.stdout
    with connect(database) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
