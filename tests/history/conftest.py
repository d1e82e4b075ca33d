"""Fixtures for the history tools: a database written by a real server run, the CLI as a
subprocess, and small readers of the SQLite file that do not go through the code under test.

`recorded_run` starts one `orchestrator serve` per session (instant tasks), drives a few
workflows and a standalone task through HTTP, remembers what the live server answered, and stops
it. Each test that needs that database gets its own copy (`database`), so tests may tamper with it.
Every server is a `tests.e2e.conftest.ServerProcess`, which serves `<workdir>/wf.db`: a database
that a test wants served therefore lives in a directory of its own under the name `wf.db`.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from orchestrator.eventstore.sqlite_schema import stored_events
from orchestrator.projections.packed_states import StateCodec
from tests.e2e.conftest import ServerProcess, free_port, server_environment
from tests.e2e.workflow_reads import get_workflow as get_workflow
from tests.e2e.workflow_reads import wait_until_finished_complete as wait_until_finished_complete
from tests.waiting import wait_for as wait_for

Json = dict[str, Any]

#: How long any wait on a server may take before it counts as a failure.
DEADLINE = 15.0
#: How long one CLI command may run.
CLI_DEADLINE = 60.0
#: The file name a ServerProcess serves from its working directory.
DATABASE_NAME = "wf.db"
#: The workflows of the recorded run, by the role each plays.
WORKFLOW_ROLES = ("automatic", "manual", "retried", "cancelled", "deleted", "waiting")


# Processes -------------------------------------------------------------------------------------


@pytest.fixture(params=["1", "3"], ids=["one-process", "three-processes"])
def processes(request: pytest.FixtureRequest) -> str:
    """`verify --processes` and `rebuild-projections --processes`: every finding and every read
    model must be the same whether one process goes over the log or several take a part of its
    streams each (cli_parts.py)."""
    value: str = request.param
    return value


# Waiting ---------------------------------------------------------------------------------------


# HTTP ------------------------------------------------------------------------------------------


class JsonResponse(Protocol):
    """What `json_of` reads of a response: httpx's, or the TestClient's (httpx2)."""

    @property
    def status_code(self) -> int: ...

    @property
    def url(self) -> object: ...

    @property
    def text(self) -> str: ...

    def json(self, **kwargs: Any) -> Any: ...


def json_of(response: JsonResponse, status: int) -> Any:
    """The JSON body of `response`, after checking its status code."""
    assert response.status_code == status, f"{response.url}: {response.status_code} {response.text}"
    return response.json()


def start_workflow(client: httpx.Client, name: str, **body: Any) -> int:
    """POST /workflow/start and return the new workflow's id."""
    started = json_of(client.post("/workflow/start", json={"name": name, **body}), 201)
    workflow_id: int = started["workflow_id"]
    return workflow_id


def wait_until_status(client: httpx.Client, workflow_id: int, status: str) -> Json:
    """The workflow once it is in `status` with no step running."""
    return wait_for(
        lambda: get_workflow(client, workflow_id),
        lambda body: body["status"] == status and body["step_running"] is None,
        what=f"workflow {workflow_id} to be {status}",
    )


def wait_until_caught_up(client: httpx.Client) -> Json:
    """GET /health once the read models have applied the whole log."""
    return wait_for(
        lambda: json_of(client.get("/health"), 200),
        lambda health: health["projection_position"] == health["log_position"],
        what="the read models to catch up with the log",
    )


# The CLI ---------------------------------------------------------------------------------------


def run_cli(
    database: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`orchestrator <args>` as a user runs it, with DATABASE_URL naming `database`."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=database.parent,  # no stray .env is read
        env=server_environment({"DATABASE_URL": f"sqlite:///{database}"}),
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=CLI_DEADLINE,
        check=False,
    )


# The SQLite file, read and altered without the code under test --------------------------------


@contextlib.contextmanager
def connect(database: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection in autocommit mode, closed on exit."""
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        yield connection
    finally:
        connection.close()


def event_rows(database: Path) -> list[tuple[Any, ...]]:
    """Every stored field of every event as the chain hashes it (position, stream_id, version,
    type, data, metadata, recorded_at, schema_version, hash: text, however compactly the file
    stores them), in position order."""
    with connect(database) as connection:
        return [
            (*event.stored_fields().values(), event.hash) for event in stored_events(connection)
        ]


def head_of(database: Path) -> int:
    """The last position in the log (0 when empty)."""
    with connect(database) as connection:
        row = connection.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()
    return int(row[0])


def projection_rows(database: Path) -> list[tuple[Any, ...]]:
    """The live read-model rows without the position they were saved at, in key order, each
    state as its JSON text (however the file stores it)."""
    with connect(database) as connection:
        states = state_codec(connection)
        rows = connection.execute(
            "SELECT kind, id, status, parent_id, deleted, needs_engine, state "
            "FROM projection_rows ORDER BY kind, id"
        ).fetchall()
    return [(*row[:6], states.unpack(row[6]).decode()) for row in rows]


def state_codec(connection: sqlite3.Connection) -> StateCodec:
    """What unpacks the live read-model states of the file (projections/packed_states.py)."""
    states = StateCodec()
    states.learn(connection.execute("SELECT id, kind, dictionary FROM projection_dictionaries"))
    return states


def projection_counters(database: Path) -> dict[str, int]:
    """The live counters by name, without the ones at zero."""
    with connect(database) as connection:
        rows = connection.execute("SELECT name, count FROM projection_counters").fetchall()
    return {name: int(count) for name, count in rows if count}


def read_model_state(database: Path, kind: str, aggregate_id: int) -> Json:
    """The stored state of one read-model row, as JSON."""
    with connect(database) as connection:
        row = connection.execute(
            "SELECT state FROM projection_rows WHERE kind = ? AND id = ?", (kind, aggregate_id)
        ).fetchone()
        assert row is not None, f"no {kind} row {aggregate_id} in {database}"
        state: Json = json.loads(state_codec(connection).unpack(row[0]))
    return state


def alter_read_model(database: Path, kind: str, aggregate_id: int, **changes: Any) -> None:
    """Change fields of one stored read-model row by hand, as a buggy projector might."""
    state = {**read_model_state(database, kind, aggregate_id), **changes}
    with connect(database) as connection:
        connection.execute(
            "UPDATE projection_rows SET state = ? WHERE kind = ? AND id = ?",
            (json.dumps(state, separators=(",", ":")), kind, aggregate_id),
        )


def drop_trigger(database: Path, name: str) -> None:
    """Remove one of the append-only triggers, as someone editing the file by hand would."""
    with connect(database) as connection:
        connection.execute(f"DROP TRIGGER {name}")


def copy_database(source: Path, target: Path) -> Path:
    """A consistent copy of `source` (WAL included) at `target`, through SQLite's backup API."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with connect(source) as original, connect(target) as copy:
        original.backup(copy)
    return target


def database_path(root: Path, name: str) -> Path:
    """A path for a database that does not exist yet, in a directory of its own."""
    directory = root / name
    directory.mkdir()
    return directory / DATABASE_NAME


def payload_of(row: tuple[Any, ...]) -> Json:
    """The JSON payload of an `event_rows` row."""
    payload: Json = json.loads(row[4])
    return payload


def workflow_statuses_from_log(database: Path) -> dict[int, str]:
    """Each workflow's state, found from its transitions in the log; deleted ones left out.

    Reads the stored payloads in either schema (`to_state`, or schema 1's `target`).
    """
    statuses: dict[int, str] = {}
    deleted: set[int] = set()
    for row in event_rows(database):
        stream, event_type = row[1], row[3]
        if not stream.startswith("workflow-"):
            continue
        workflow_id = int(stream.removeprefix("workflow-"))
        statuses.setdefault(workflow_id, "INIT")
        if event_type == "WorkflowTransitioned":
            payload = payload_of(row)
            statuses[workflow_id] = str(payload.get("to_state", payload.get("target")))
        elif event_type == "WorkflowDeleted":
            deleted.add(workflow_id)
    return {key: value for key, value in statuses.items() if key not in deleted}


# Servers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRun:
    """A database a real server wrote, and what that server answered before it stopped."""

    database: Path
    #: Workflow ids by role (see WORKFLOW_ROLES).
    workflow_ids: dict[str, int]
    task_id: int
    #: GET /workflow/{id} of every workflow that was not deleted, by id.
    workflows: dict[int, Json]
    #: GET /tasks/{id} of the standalone task.
    task: Json
    #: GET /execution/stats.
    stats: Json
    #: The log position the server had reached when it stopped.
    head: int


def drive_recorded_workflows(client: httpx.Client) -> tuple[dict[str, int], int]:
    """Run one workflow of each role and a standalone task; their ids once all have settled."""
    ids: dict[str, int] = {}
    ids["automatic"] = start_workflow(client, "automatic", config={"iterations": 10})
    ids["manual"] = start_workflow(client, "manual", auto_start=False)
    for _ in range(4):
        json_of(client.post(f"/workflow/{ids['manual']}/next"), 200)
    ids["retried"] = start_workflow(client, "retried", config={"simulate_failure": True})
    wait_until_status(client, ids["retried"], "FAILED")
    json_of(client.post(f"/workflow/{ids['retried']}/retry"), 200)
    ids["cancelled"] = start_workflow(client, "cancelled", auto_start=False)
    json_of(client.post(f"/workflow/{ids['cancelled']}/next"), 200)
    json_of(client.post(f"/workflow/{ids['cancelled']}/cancel"), 200)
    ids["deleted"] = start_workflow(client, "deleted", config={"iterations": 3})
    wait_until_finished_complete(client, ids["deleted"])
    assert client.delete(f"/workflow/{ids['deleted']}").status_code == 204
    ids["waiting"] = start_workflow(client, "waiting", auto_start=False)
    for _ in range(2):
        json_of(client.post(f"/workflow/{ids['waiting']}/next"), 200)
    created = json_of(
        client.post(
            "/tasks", json={"name": "sum", "task_type": "compute", "config": {"iterations": 50}}
        ),
        201,
    )
    task_id: int = created["task_id"]
    wait_for(
        lambda: json_of(client.get(f"/tasks/{task_id}"), 200),
        lambda task: task["status"] == "completed",
        what=f"task {task_id} to complete",
    )
    for role in ("automatic", "manual", "retried"):
        wait_until_finished_complete(client, ids[role])
    return ids, task_id


@pytest.fixture(scope="session")
def recorded_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordedRun]:
    """One real server run over HTTP (see the module docstring), stopped before tests use it."""
    server = ServerProcess(workdir=tmp_path_factory.mktemp("recorded-run"), port=free_port())
    server.start()
    try:
        with server.client() as client:
            ids, task_id = drive_recorded_workflows(client)
            health = wait_until_caught_up(client)
            workflows = {
                workflow_id: get_workflow(client, workflow_id)
                for role, workflow_id in ids.items()
                if role != "deleted"
            }
            task: Json = json_of(client.get(f"/tasks/{task_id}"), 200)
            stats: Json = json_of(client.get("/execution/stats"), 200)
    finally:
        server.stop()
    assert head_of(server.db_path) == health["log_position"]
    yield RecordedRun(
        database=server.db_path,
        workflow_ids=ids,
        task_id=task_id,
        workflows=workflows,
        task=task,
        stats=stats,
        head=health["log_position"],
    )


@pytest.fixture
def database(recorded_run: RecordedRun, tmp_path: Path) -> Path:
    """This test's own copy of the recorded run's database."""
    return copy_database(recorded_run.database, tmp_path / "recorded" / DATABASE_NAME)


class ServeDatabase(Protocol):
    """Starts a healthy server on `database` (named wf.db) with the defaults plus `overrides`."""

    def __call__(self, database: Path, **overrides: str) -> ServerProcess: ...


@pytest.fixture
def serve() -> Iterator[ServeDatabase]:
    """A function that starts a server on a given database; every server is stopped at teardown."""
    servers: list[ServerProcess] = []

    def start(database: Path, **overrides: str) -> ServerProcess:
        assert database.name == DATABASE_NAME, f"a server serves {DATABASE_NAME}, not {database}"
        server = ServerProcess(workdir=database.parent, port=free_port(), overrides=overrides)
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
