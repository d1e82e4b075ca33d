"""`orchestrator import-original`: the original orchestrator's database carried into our log.

The fixture builds a database as the original FastAPI + SQLAlchemy service leaves it (its three
tables, realistic rows, SQLAlchemy's text formats plus the variations a real file shows). The
import must give back every row when its stream is folded, be idempotent, refuse what it cannot
import faithfully without writing anything, and leave a log that verifies and a server that
serves the imported workflows and hands out ids above them. `serve` on the original's file stops
at once, pointing at the command, and leaves the file as it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import pytest
from starlette.testclient import TestClient

from orchestrator.cli import main
from orchestrator.domain.aggregates import WORKFLOW
from orchestrator.domain.events import StepFailed, WorkflowStarted, decode_event, encode_event
from orchestrator.domain.states import State
from orchestrator.domain.tasks import Task, decode_task_event, evolve_task
from orchestrator.domain.upcasting import CURRENT_SCHEMA
from orchestrator.domain.workflow import Workflow, evolve
from orchestrator.eventstore.base import NewEvent
from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.eventstore.sqlite_schema import OriginalDatabase
from orchestrator.history.original_events import workflow_events
from orchestrator.history.original_rows import TransitionRow, WorkflowRow
from orchestrator.http.app import create_app
from orchestrator.settings import Settings
from tests.e2e.conftest import free_port, serve_command, server_environment
from tests.history.conftest import (
    CLI_DEADLINE,
    connect,
    event_rows,
    head_of,
    json_of,
    read_model_state,
    run_cli,
    wait_for,
)
from tests.settings_for_tests import TESTCLIENT_HOSTS

Json = dict[str, Any]

FLAT = {
    "INIT": {"status": "initialized", "message": "Workflow initialized"},
    "PREPARE": {"status": "prepared", "files_created": 3, "message": "Resources prepared"},
    "EXECUTE": {"status": "executed", "computation_result": 285, "iterations": 10},
    "VALIDATE": {"status": "validated", "validation_passed": True, "checks_performed": 5},
    "COMPLETE": {"status": "completed", "message": "Workflow completed"},
}
FAILURE = "SimulatedFailure: simulated failure on attempt 1 (fails while retries < 1)"


def workflow(row_id: int, name: str, state: str, **fields: Any) -> Json:
    """A `workflows` row; JSON columns as Python values (None: SQL NULL)."""
    row: Json = {"id": row_id, "name": name, "description": None, "status": state}
    row |= {"current_state": state, "config": None, "task_results": None, "retries": 0}
    row |= {"error_message": None, "started_at": None, "completed_at": None}
    return row | {"created_at": fields.get("started_at"), "updated_at": None} | fields


# fmt: off
WORKFLOWS = [
    workflow(
        3, "nightly-report", "COMPLETE", description="every night", config={"iterations": 10},
        task_results=FLAT, started_at="2024-03-01 09:00:00.000000",
        created_at="2024-03-01 08:59:59.990000", completed_at="2024-03-01 09:00:02.840000",
    ),
    workflow(  # lower-case names, ISO times without microseconds, the worker's wrapper
        7, "flaky-export", "failed", config={"simulate_failure": True}, error_message=FAILURE,
        task_results={
            "INIT": {"success": True, "result": FLAT["INIT"], "task_type": "initialize"},
        },
        started_at="2024-03-02T10:00:00", completed_at="2024-03-02T10:00:01",
    ),
    workflow(
        8, "retried", "COMPLETE", retries=1, config={"fail_until_retry": 1}, task_results=FLAT,
        started_at="2024-03-03 11:00:00.000000", completed_at="2024-03-03 11:05:02.800000",
    ),
    workflow(
        12, "cancelled", "CANCELLED", task_results={"INIT": FLAT["INIT"]},
        started_at="2024-03-04 12:00:00.000000", completed_at="2024-03-04 12:00:00.900000",
    ),
    workflow(  # created by POST /workflows and never started; retries NULL
        15, "step-by-step", "INIT", retries=None, created_at="2024-03-05 13:00:00.000000",
    ),
    workflow(  # in flight when the original stopped
        21, "in-flight", "EXECUTE", config={"iterations": 5},
        task_results={"INIT": FLAT["INIT"], "PREPARE": FLAT["PREPARE"]},
        started_at="2024-03-06 14:00:00.000000",
    ),
]
#: (id, workflow_id, from_state, to_state, trigger, transition_metadata, created_at)
TRANSITIONS: list[tuple[int, int, str | None, str, str | None, Any, str]] = [
    (1, 3, "INIT", "PREPARE", "prepare", {"task": "initialize"}, "2024-03-01 09:00:00.512345"),
    (2, 3, "PREPARE", "EXECUTE", "execute", None, "2024-03-01 09:00:01.220000"),
    (3, 3, "EXECUTE", "VALIDATE", "validate", None, "2024-03-01 09:00:02.230000"),
    (4, 3, "VALIDATE", "COMPLETE", "complete", None, "2024-03-01 09:00:02.840000"),
    (5, 7, "init", "prepare", "prepare", None, "2024-03-02T10:00:00.5"),
    (6, 7, "prepare", "failed", "fail", {"error": FAILURE}, "2024-03-02T10:00:01"),
    (7, 8, "INIT", "FAILED", "fail", None, "2024-03-03 11:00:00.400000"),
    (8, 8, "FAILED", "INIT", "retry", None, "2024-03-03 11:05:00.000000"),
    (9, 8, "INIT", "PREPARE", "prepare", None, "2024-03-03 11:05:00.500000"),
    (10, 8, "PREPARE", "EXECUTE", "execute", None, "2024-03-03 11:05:01.200000"),
    (11, 8, "EXECUTE", "VALIDATE", "validate", None, "2024-03-03 11:05:02.200000"),
    (12, 8, "VALIDATE", "COMPLETE", "complete", None, "2024-03-03 11:05:02.800000"),
    (13, 12, "INIT", "PREPARE", "prepare", None, "2024-03-04 12:00:00.500000"),
    (14, 12, "PREPARE", "CANCELLED", "cancel", None, "2024-03-04 12:00:00.900000"),
    (15, 21, None, "INIT", None, None, "2024-03-06 14:00:00.000000"),  # creation record
    (16, 21, "INIT", "PREPARE", "prepare", None, "2024-03-06 14:00:00.500000"),
    (17, 21, "PREPARE", "EXECUTE", "execute", None, "2024-03-06 14:00:01.200000"),
]


def task(row_id: int, name: str, task_type: str, status: str, **fields: Any) -> Json:
    """A `tasks` row."""
    row: Json = {"id": row_id, "workflow_id": None, "name": name, "task_type": task_type}
    row |= {"description": None, "config": {"duration": 0.01}, "status": status}
    row |= {"result": None, "error_message": None, "retry_count": 0, "max_retries": 0}
    row |= {"started_at": None, "completed_at": None, "updated_at": None}
    return row | {"created_at": "2024-03-07 08:00:00.000000"} | fields


TASKS = [
    task(
        2, "crunch", "compute", "COMPLETED", workflow_id=3, config={"iterations": 10},
        result={"result": 285, "iterations": 10}, max_retries=2,
        started_at="2024-03-07 08:00:00.100000", completed_at="2024-03-07 08:00:00.250000",
    ),
    task(
        5, "nap", "sleep", "failed", error_message="TimeoutError: task timed out after 5 s",
        retry_count=2, max_retries=2,
        started_at="2024-03-07 08:01:00.000000", completed_at="2024-03-07 08:01:15.000000",
    ),
    task(6, "queued", "sleep", "pending"),
    task(9, "busy", "compute", "RUNNING", config={"iterations": 100},
         started_at="2024-03-07 08:03:00.000000"),
    task(10, "stopped", "sleep", "CANCELLED", completed_at="2024-03-07 08:04:00.000000"),
    task(
        11, "retrying", "compute", "PENDING", config={"iterations": 7}, retry_count=1,
        max_retries=3, error_message="ValueError: boom", started_at="2024-03-07 08:05:00.000000",
    ),
]
# fmt: on
WORKFLOW_IDS = [int(row["id"]) for row in WORKFLOWS]
TASK_IDS = [int(row["id"]) for row in TASKS]
MOVES = sum(1 for t in TRANSITIONS if t[2] is not None)
SUMMARY = "imported 6 workflows ({moves} transitions) and 6 tasks from {path}"

SCHEMA = """
CREATE TABLE workflows (id INTEGER PRIMARY KEY, name VARCHAR(255) NOT NULL, description TEXT,
    status VARCHAR(9) NOT NULL, current_state VARCHAR(9) NOT NULL, config JSON, task_results JSON,
    retries INTEGER, error_message TEXT, started_at DATETIME, completed_at DATETIME,
    created_at DATETIME, updated_at DATETIME);
CREATE TABLE workflow_transitions (id INTEGER PRIMARY KEY,
    workflow_id INTEGER NOT NULL REFERENCES workflows(id), from_state VARCHAR(9),
    to_state VARCHAR(9) NOT NULL, trigger VARCHAR(50), transition_metadata JSON,
    created_at DATETIME);
CREATE TABLE tasks (id INTEGER PRIMARY KEY, workflow_id INTEGER REFERENCES workflows(id),
    name VARCHAR(255) NOT NULL, task_type VARCHAR(50) NOT NULL, description TEXT, config JSON,
    status VARCHAR(9) NOT NULL, result JSON, error_message TEXT, retry_count INTEGER,
    max_retries INTEGER, started_at DATETIME, completed_at DATETIME, created_at DATETIME,
    updated_at DATETIME);
"""


def insert(connection: sqlite3.Connection, table: str, row: Json) -> None:
    """One row, JSON columns as JSON text (None stays SQL NULL)."""
    values = [json.dumps(v) if isinstance(v, dict) else v for v in row.values()]
    marks = ", ".join("?" * len(row))
    connection.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({marks})", values)


@pytest.fixture
def original(tmp_path: Path) -> Path:
    """A database of the original orchestrator, as its SQLAlchemy models leave it."""
    path = tmp_path / "original" / "orchestrator.db"
    path.parent.mkdir()
    with connect(path) as connection:
        connection.executescript(SCHEMA)
        for row in WORKFLOWS:
            insert(connection, "workflows", row)
        # SQLAlchemy's JSON type writes None as the JSON text null unless told otherwise.
        connection.execute("UPDATE workflows SET task_results = 'null' WHERE id = 15")
        for values in TRANSITIONS:
            columns = "id, workflow_id, from_state, to_state, trigger, transition_metadata"
            connection.execute(
                f"INSERT INTO workflow_transitions ({columns}, created_at) VALUES (?,?,?,?,?,?,?)",
                [json.dumps(v) if isinstance(v, dict) else v for v in values],
            )
        for row in TASKS:
            insert(connection, "tasks", row)
    return path


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """Where the import writes: a database that does not exist yet."""
    directory = tmp_path / "target"
    directory.mkdir()
    return directory / "wf.db"


def utc(text: str | None) -> datetime | None:
    """A time as the original wrote it (naive UTC text), as an aware datetime."""
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def folded(database: Path) -> tuple[dict[int, Workflow], dict[int, Task]]:
    """Every workflow and task folded from the stored events, bypassing the read models."""
    workflows: dict[int, Workflow] = {}
    tasks: dict[int, Task] = {}
    for row in event_rows(database):
        stream, data, schema = row[1], row[4].encode(), row[7]
        number = int(stream.split("-")[1])
        if stream.startswith("workflow-"):
            workflows[number] = evolve(workflows.get(number), decode_event(data, schema))
        else:
            tasks[number] = evolve_task(tasks.get(number), decode_task_event(data, schema))
    return workflows, tasks


def fingerprint(path: Path) -> str:
    """A hash of the file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def table_names(path: Path) -> set[str]:
    """The tables in the SQLite file at `path`."""
    with connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


@pytest.fixture
def imported(original: Path, target: Path) -> Path:
    """`target` after `orchestrator import-original` (the real command) read `original`."""
    finished = run_cli(target, "import-original", str(original))
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.splitlines() == [SUMMARY.format(moves=MOVES, path=original)]
    return target


@pytest.mark.e2e
def test_each_imported_workflow_folds_back_to_its_original_row(imported: Path) -> None:
    workflows, _ = folded(imported)

    assert sorted(workflows) == WORKFLOW_IDS
    for row in WORKFLOWS:
        got = workflows[row["id"]]
        moves = [t for t in TRANSITIONS if t[1] == row["id"] and t[2] is not None]
        results = {k: v.get("result", v) for k, v in (row["task_results"] or {}).items()}
        assert (got.name, got.description, got.config) == (
            row["name"],
            row["description"],
            row["config"] or {},
        )
        assert got.state.value == row["current_state"].upper()
        assert got.retries == (row["retries"] or 0)
        assert got.error_message == row["error_message"]
        assert got.task_results == results
        assert got.started_at == utc(row["started_at"])
        assert got.completed_at == utc(row["completed_at"])
        assert [
            (t.from_state.value, t.to_state.value, t.trigger.value, t.at) for t in got.transitions
        ] == [(str(m[2]).upper(), m[3].upper(), m[4], utc(m[6])) for m in moves]
        assert got.step is None
        # The read model was brought up to date by the import and agrees with the log.
        stored = read_model_state(imported, "workflow", row["id"])
        assert msgspec.convert(stored, Workflow) == got


@pytest.mark.e2e
def test_imported_workflows_keep_their_created_time_and_the_wrappers_task_type(
    imported: Path,
) -> None:
    workflows, _ = folded(imported)

    assert workflows[3].created_at == utc("2024-03-01 08:59:59.990000")
    assert workflows[15].created_at == utc("2024-03-05 13:00:00.000000")
    assert workflows[7].task_names == {"INIT": "initialize"}
    assert workflows[3].task_names["COMPLETE"] == "finalize"
    assert workflows[3].finalized
    # Never started in the original: it waits; started ones run by themselves.
    assert (workflows[15].launched, workflows[15].auto_start) == (False, False)
    assert workflows[21].auto_start and workflows[21].launched


@pytest.mark.e2e
def test_each_imported_task_folds_back_to_its_original_row(imported: Path) -> None:
    _, tasks = folded(imported)

    assert sorted(tasks) == TASK_IDS
    for row in TASKS:
        got = tasks[row["id"]]
        assert (got.name, got.task_type, got.workflow_id, got.config) == (
            row["name"],
            row["task_type"],
            row["workflow_id"],
            row["config"],
        )
        assert got.status.name == row["status"].upper()
        assert got.result == row["result"]
        assert got.error == row["error_message"]
        assert (got.retry_count, got.max_retries) == (row["retry_count"], row["max_retries"])
        assert got.created_at == utc(row["created_at"])
        assert got.started_at == utc(row["started_at"])
        assert got.completed_at == utc(row["completed_at"])


@pytest.mark.e2e
def test_every_imported_event_says_where_it_came_from(imported: Path) -> None:
    rows = event_rows(imported)
    transitions = [json.loads(r[5]) for r in rows if r[3] == "WorkflowTransitioned"]

    for row in rows:
        metadata = json.loads(row[5])
        table = "workflows" if row[1].startswith("workflow-") else "tasks"
        assert metadata["imported_from"] == "original"
        source_id = int(row[1].rsplit("-", 1)[1])
        assert (metadata["source_table"], metadata["source_id"]) == (table, source_id)
        assert (metadata["actor"], metadata["command"]) == ("import", "ImportOriginal")
        assert ("source_row" in metadata) == (row[2] == 1)
    assert [m["source_transition_id"] for m in transitions] == [
        t[0] for t in TRANSITIONS if t[2] is not None
    ]
    assert transitions[0]["transition_metadata"] == {"task": "initialize"}


@pytest.mark.e2e
def test_a_second_run_adds_nothing_and_says_so(imported: Path, original: Path) -> None:
    before = event_rows(imported)

    again = run_cli(imported, "import-original", str(original))

    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        f"imported 0 workflows (0 transitions) and 0 tasks from {original}",
        "skipped 6 workflows and 6 tasks imported from it before",
    ]
    assert event_rows(imported) == before
    assert head_of(imported) == len(before)


@pytest.mark.e2e
def test_the_imported_log_verifies(imported: Path) -> None:
    verified = run_cli(imported, "verify")

    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "the log is intact" in verified.stdout


@pytest.mark.e2e
def test_a_server_started_after_the_import_serves_the_original_ids_and_times(
    imported: Path,
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{imported}",
        task_time_scale=0,
        log_file="",
        allowed_hosts=TESTCLIENT_HOSTS,
    )
    with TestClient(create_app(settings)) as client:
        for row in WORKFLOWS[:4]:  # the finished ones: nothing changes them at start-up
            body = json_of(client.get(f"/workflow/{row['id']}"), 200)
            assert body["status"] == row["current_state"].upper()
            assert body["retries"] == row["retries"]
            assert body["error_message"] == row["error_message"]
            assert utc_of(body["started_at"]) == utc(row["started_at"])
            assert utc_of(body["completed_at"]) == utc(row["completed_at"])
            assert [(t["trigger"], utc_of(t["timestamp"])) for t in body["transitions"]] == [
                (t[4], utc(t[6])) for t in TRANSITIONS if t[1] == row["id"] and t[2]
            ]
        waiting = json_of(client.get("/workflow/15"), 200)
        assert (waiting["status"], waiting["started_at"]) == ("INIT", None)
        # In flight in the original: the engine runs its current step again and drives it on.
        resumed = wait_for(
            lambda: json_of(client.get("/workflow/21"), 200),
            lambda body: body["status"] == "COMPLETE" and body["step_running"] is None,
            what="workflow 21 to be resumed to COMPLETE",
        )
        assert [t["to_state"] for t in resumed["transitions"]][-2:] == ["VALIDATE", "COMPLETE"]

        def task_body(task_id: int) -> Json:
            body: Json = json_of(client.get(f"/tasks/{task_id}"), 200)
            return body

        for task_id in (6, 9, 11):  # pending and running tasks run again
            wait_for(
                partial(task_body, task_id),
                lambda body: str(body["status"]).upper() == "COMPLETED",
                what=f"task {task_id} to complete",
            )
        started = json_of(client.post("/workflow/start", json={"name": "after"}), 201)
        assert started["workflow_id"] > max(WORKFLOW_IDS)
        created = json_of(
            client.post("/tasks", json={"name": "n", "task_type": "compute", "config": {}}), 201
        )
        assert created["task_id"] > max(TASK_IDS)


def utc_of(text: str | None) -> datetime | None:
    """A time as the API shows it."""
    return None if text is None else datetime.fromisoformat(text)


# Refusals: one line, exit 1, nothing written ---------------------------------------------------


def foreign_workflow_3(database: Path) -> None:
    """Start workflow 3 in `database` as our own API would: a stream not imported."""

    async def write() -> None:
        store = SQLiteEventStore(str(database))
        await store.open()
        try:
            started = WorkflowStarted(at=datetime.now(UTC), workflow_id=3, name="ours")
            event = NewEvent(
                type="WorkflowStarted",
                data=encode_event(started),
                metadata={"actor": "api", "command": "StartWorkflow"},
                schema_version=CURRENT_SCHEMA,
            )
            await store.append("workflow-3", 0, [event])
        finally:
            await store.close()

    asyncio.run(write())


def run_main(
    monkeypatch: pytest.MonkeyPatch, database: Path, *args: str
) -> tuple[int, list[str], list[str]]:
    """`orchestrator.cli.main(args)` with DATABASE_URL naming `database`: code, stdout, stderr."""
    monkeypatch.chdir(database.parent)  # no stray .env is read
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{database}")
    out, err = (database.parent / "out.txt"), (database.parent / "err.txt")
    with out.open("w") as stdout, err.open("w") as stderr:
        monkeypatch.setattr(sys, "stdout", stdout)
        monkeypatch.setattr(sys, "stderr", stderr)
        code = main(list(args))
    monkeypatch.undo()
    return code, out.read_text().splitlines(), err.read_text().splitlines()


def spoil(statement: str) -> Any:
    """A change to the original's file that makes one row unreadable."""

    def apply(path: Path) -> Path:
        with connect(path) as connection:
            connection.execute(statement)
        return path

    return apply


def other_file(content: str | None) -> Any:
    """A file beside the original that is not one (None: no file at all)."""

    def make(path: Path) -> Path:
        other = path.with_name("other.db")
        if content == "sqlite":
            with connect(other) as connection:
                connection.execute("CREATE TABLE workflows (id INTEGER PRIMARY KEY)")
        elif content is not None:
            other.write_text(content)
        return other

    return make


REFUSALS = {
    "a foreign stream": (lambda path: path, "workflow-3 already exists in the target"),
    "no such file": (other_file(None), "no database at"),
    "not SQLite": (other_file("id,name\n1,x\n"), "cannot be read as a SQLite database"),
    "missing tables": (
        other_file("sqlite"),
        "is not a database of the original orchestrator: it has no table "
        "workflow_transitions, tasks",
    ),
    "unknown state": (
        spoil("UPDATE workflows SET status = 'RUNNING', current_state = 'RUNNING' WHERE id = 8"),
        "workflows id 8 is unreadable: current_state 'RUNNING' is not a workflow state",
    ),
    "bad JSON": (
        spoil("UPDATE tasks SET config = '{oops' WHERE id = 5"),
        "tasks id 5 is unreadable: config is not JSON",
    ),
    "bad time": (
        spoil("UPDATE workflow_transitions SET created_at = 'yesterday' WHERE id = 9"),
        "workflow_transitions id 9 is unreadable: created_at 'yesterday' is not a date",
    ),
    "retries without a retry": (
        spoil("UPDATE workflows SET retries = 2 WHERE id = 8"),
        "workflows id 8 is unreadable: retries is 2 but it has 1 retry transitions",
    ),
    "a move off the table": (
        spoil("UPDATE workflow_transitions SET to_state = 'COMPLETE' WHERE id = 16"),
        "workflow_transitions id 16 is unreadable: INIT -> COMPLETE",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_import_says_why_in_one_line_and_leaves_the_target_unchanged(
    monkeypatch: pytest.MonkeyPatch, original: Path, target: Path, case: str
) -> None:
    foreign_workflow_3(target)
    before = (event_rows(target), table_names(target))
    make_source, reason = REFUSALS[case]
    source = make_source(original)

    code, out, err = run_main(monkeypatch, target, "import-original", str(source))

    assert code == 1
    assert out == []
    assert len(err) == 1, err
    assert err[0].startswith("orchestrator: ") and reason in err[0], err
    assert (event_rows(target), table_names(target)) == before


def test_a_refused_import_does_not_create_a_target_that_did_not_exist(
    monkeypatch: pytest.MonkeyPatch, original: Path, target: Path
) -> None:
    spoil("UPDATE tasks SET status = 'LOST' WHERE id = 9")(original)

    code, _, err = run_main(monkeypatch, target, "import-original", str(original))

    assert code == 1
    assert err == [
        "orchestrator: tasks id 9 is unreadable: status 'LOST' is not one of PENDING, "
        "RUNNING, COMPLETED, FAILED, CANCELLED"
    ]
    assert not target.exists()


def test_importing_a_database_into_itself_is_refused_and_leaves_it_as_it_was(
    monkeypatch: pytest.MonkeyPatch, original: Path
) -> None:
    before = fingerprint(original)

    code, _, err = run_main(monkeypatch, original, "import-original", str(original))

    assert code == 1
    assert err == [
        f"orchestrator: {original} is the target database itself (DATABASE_URL); "
        "import it into a new database"
    ]
    assert fingerprint(original) == before
    assert "events" not in table_names(original)


def test_import_original_without_a_path_names_the_missing_argument(
    monkeypatch: pytest.MonkeyPatch, target: Path
) -> None:
    with pytest.raises(SystemExit) as exited:
        run_main(monkeypatch, target, "import-original")

    assert exited.value.code == 2
    assert "path" in (target.parent / "err.txt").read_text()


def test_transitions_of_workflows_the_original_deleted_are_left_out_and_counted(
    monkeypatch: pytest.MonkeyPatch, original: Path, target: Path
) -> None:
    with connect(original) as connection:
        connection.execute(
            "INSERT INTO workflow_transitions (workflow_id, from_state, to_state, trigger, "
            "created_at) VALUES (99, 'INIT', 'PREPARE', 'prepare', '2024-03-08 10:00:00')"
        )

    code, out, err = run_main(monkeypatch, target, "import-original", str(original))

    assert code == 0, err
    assert out == [
        SUMMARY.format(moves=MOVES, path=original),
        "left out 1 transitions of workflows the original no longer has",
    ]
    assert {row[1] for row in event_rows(target)} == {
        *(f"workflow-{n}" for n in WORKFLOW_IDS),
        *(f"task-{n}" for n in TASK_IDS),
    }


# The original's file is never opened as a log ---------------------------------------------------


@pytest.mark.e2e
def test_serve_on_the_originals_database_stops_with_one_line_pointing_at_the_import(
    original: Path,
) -> None:
    before = fingerprint(original)

    finished = subprocess.run(
        [*serve_command(free_port())],
        cwd=original.parent,
        env=server_environment({"DATABASE_URL": f"sqlite:///{original}", "LOG_FILE": ""}),
        capture_output=True,
        text=True,
        timeout=CLI_DEADLINE,
        check=False,
    )

    assert finished.returncode == 2, finished.stdout + finished.stderr
    assert finished.stderr.splitlines() == [
        f"orchestrator: {original} is a database of the original orchestrator; import it into "
        f"a new database with: DATABASE_URL=sqlite:///new.db orchestrator import-original "
        f"{original}"
    ]
    assert fingerprint(original) == before
    assert table_names(original) == {"workflows", "workflow_transitions", "tasks"}


@pytest.mark.anyio
async def test_the_sqlite_store_refuses_to_open_the_originals_database(original: Path) -> None:
    before = fingerprint(original)
    store = SQLiteEventStore(str(original))

    with pytest.raises(OriginalDatabase) as refused:
        await store.open()

    assert refused.value.path == str(original)
    assert fingerprint(original) == before
    assert "events" not in table_names(original)


# The mapping, row by row ------------------------------------------------------------------------


def test_an_error_left_on_a_retried_workflow_stays_on_its_failed_step_and_in_source_row() -> None:
    at = datetime(2024, 3, 3, 11, tzinfo=UTC)
    failed_at, retried_at = at + timedelta(seconds=1), at + timedelta(seconds=2)
    row = WorkflowRow(
        id=8,
        name="retried",
        description=None,
        state=State.INIT,
        config={},
        task_results={},
        retries=1,
        error_message=FAILURE,  # the original did not clear it on retry
        started_at=at,
        completed_at=None,
        created_at=at,
        updated_at=None,
        transitions=[
            TransitionRow(1, State.INIT, State.FAILED, "fail", None, failed_at),
            TransitionRow(2, State.FAILED, State.INIT, "RETRY", None, retried_at),
        ],
    )

    pairs = workflow_events(row)

    failures = [event for event, _ in pairs if isinstance(event, StepFailed)]
    assert [(f.state, f.error, f.at) for f in failures] == [(State.INIT, FAILURE, failed_at)]
    after = WORKFLOW.fold(event for event, _ in pairs)
    assert after is not None
    assert (after.state, after.retries, after.error_message) == (State.INIT, 1, None)
    assert pairs[0][1]["source_row"]["error_message"] == FAILURE
