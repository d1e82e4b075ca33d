"""The real `orchestrator serve` process: workflows over HTTP, crash recovery, settings and logs.

Every wait polls a condition against a deadline; the only timed window is in the cancel test,
which watches that a cancelled workflow *stays* cancelled while its task runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from orchestrator.eventstore.sqlite_schema import stored_events
from tests.e2e.workflow_reads import (
    get_workflow,
    has_finished_complete,
    wait_until_finished_complete,
)
from tests.waiting import wait_for, wait_for_async

if TYPE_CHECKING:
    from tests.e2e.conftest import RunServe, ServerProcess, StartServer

Json = dict[str, Any]

FORWARD_PATH = [
    ("INIT", "PREPARE"),
    ("PREPARE", "EXECUTE"),
    ("EXECUTE", "VALIDATE"),
    ("VALIDATE", "COMPLETE"),
]
TASK_STATES = ["INIT", "PREPARE", "EXECUTE", "VALIDATE", "COMPLETE"]
#: Unscaled durations of the built-in tasks, INIT..COMPLETE (API.md).
FULL_RUN_SECONDS = 0.5 + 0.7 + 1.0 + 0.6 + 0.3
DEADLINE = 15.0


# HTTP ------------------------------------------------------------------------------------------


def json_of(response: httpx.Response, status: int) -> Json:
    """The JSON body of `response`, after checking its status code."""
    assert response.status_code == status, f"{response.request.url}: {response.text}"
    body: Json = response.json()
    return body


def start_workflow(client: httpx.Client, **body: Any) -> int:
    """POST /workflow/start and return the new workflow's id."""
    started = json_of(client.post("/workflow/start", json={"name": "e2e", **body}), 201)
    workflow_id: int = started["workflow_id"]
    return workflow_id


def get_stats(client: httpx.Client) -> Json:
    """GET /execution/stats."""
    return json_of(client.get("/execution/stats"), 200)


def transition_pairs(workflow: Json) -> list[tuple[str, str]]:
    """The workflow's transitions as (from_state, to_state), in order."""
    return [(t["from_state"], t["to_state"]) for t in workflow["transitions"]]


def assert_built_in_results(task_results: Json, workflow_id: int, iterations: int) -> None:
    """The five built-in tasks recorded the results API.md promises."""
    assert list(task_results) == TASK_STATES
    assert task_results["INIT"]["status"] == "initialized"
    assert isinstance(task_results["INIT"]["message"], str)
    assert task_results["PREPARE"]["status"] == "prepared"
    assert task_results["PREPARE"]["files_created"] == 3
    assert task_results["EXECUTE"]["status"] == "executed"
    assert task_results["EXECUTE"]["iterations"] == iterations
    assert task_results["EXECUTE"]["computation_result"] == sum(i * i for i in range(iterations))
    assert task_results["VALIDATE"]["status"] == "validated"
    assert task_results["VALIDATE"]["validation_passed"] is True
    assert task_results["VALIDATE"]["checks_performed"] == 5
    assert task_results["COMPLETE"]["status"] == "completed"
    assert isinstance(task_results["COMPLETE"]["message"], str)


# The event log, read straight from the SQLite file -----------------------------------------------


def read_stream(db_path: Path, stream_id: str) -> list[tuple[int, str, Json]]:
    """(version, type, data) of every event in the stream, in log (position) order."""
    with contextlib.closing(sqlite3.connect(db_path)) as connection:
        events = stored_events(connection)  # the file's rows, however compactly stored
    return [(e.version, e.type, json.loads(e.data)) for e in events if e.stream_id == stream_id]


def read_stream_ids(db_path: Path) -> set[str]:
    """Every stream that has at least one event."""
    with contextlib.closing(sqlite3.connect(db_path)) as connection:
        rows = connection.execute("SELECT DISTINCT stream_id FROM events").fetchall()
    return {stream_id for (stream_id,) in rows}


# Tests -----------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_automatic_workflow_runs_through_every_state_to_complete(server: ServerProcess) -> None:
    with server.client() as client:
        response = client.post(
            "/workflow/start", json={"name": "nightly", "config": {"iterations": 100}}
        )
        started = json_of(response, 201)
        workflow_id = started["workflow_id"]
        assert started == {
            "message": "Workflow started",
            "workflow_id": workflow_id,
            "name": "nightly",
            "status": "INIT",
            "current_state": "INIT",
        }

        workflow = wait_until_finished_complete(client, workflow_id)

    assert workflow["current_state"] == "COMPLETE"
    assert workflow["retries"] == 0
    assert workflow["error_message"] is None
    assert workflow["next_trigger"] is None
    assert workflow["completed_at"] is not None
    assert transition_pairs(workflow) == FORWARD_PATH
    assert [t["trigger"] for t in workflow["transitions"]] == [
        "prepare",
        "execute",
        "validate",
        "complete",
    ]
    assert all(t["timestamp"] == t["created_at"] for t in workflow["transitions"])
    assert_built_in_results(workflow["task_results"], workflow_id, iterations=100)


@pytest.mark.e2e
def test_manual_workflow_waits_in_init_and_completes_after_four_next_calls(
    server: ServerProcess,
) -> None:
    with server.client() as client:
        manual_id = start_workflow(client, name="manual", auto_start=False)
        # An automatic workflow started after it finishing proves the engine had every chance
        # to move the manual one too.
        automatic_id = start_workflow(client, name="automatic")
        wait_until_finished_complete(client, automatic_id)
        waiting = get_workflow(client, manual_id)
        assert waiting["status"] == "INIT"
        assert waiting["transitions"] == []
        assert waiting["task_results"] == {}
        assert waiting["next_trigger"] == "prepare"

        reached: list[str] = []
        for _ in range(4):
            step = json_of(client.post(f"/workflow/{manual_id}/next"), 200)
            assert step["workflow_id"] == manual_id
            assert step["status"] == step["current_state"]
            reached.append(step["current_state"])
        assert reached == ["PREPARE", "EXECUTE", "VALIDATE", "COMPLETE"]

        workflow = wait_until_finished_complete(client, manual_id)
        assert transition_pairs(workflow) == FORWARD_PATH
        assert_built_in_results(workflow["task_results"], manual_id, iterations=5000)

        refused = json_of(client.post(f"/workflow/{manual_id}/next"), 409)
        assert refused["error"] == "invalid_transition"
        assert "COMPLETE" in refused["detail"]


@pytest.mark.e2e
def test_failed_workflow_completes_after_one_retry(server: ServerProcess) -> None:
    with server.client() as client:
        workflow_id = start_workflow(client, config={"simulate_failure": True})
        failed = wait_for(
            lambda: get_workflow(client, workflow_id),
            lambda w: w["status"] in ("FAILED", "COMPLETE"),
            what=f"workflow {workflow_id} to fail",
        )
        assert failed["status"] == "FAILED"
        assert failed["error_message"]
        assert "attempt 1" in failed["error_message"]
        assert failed["next_trigger"] == "retry"
        assert transition_pairs(failed) == [("INIT", "FAILED")]

        retried = json_of(client.post(f"/workflow/{workflow_id}/retry"), 200)
        assert retried["workflow_id"] == workflow_id
        assert retried["retries"] == 1
        assert retried["current_state"] == "INIT"
        assert retried["status"] == "INIT"

        workflow = wait_until_finished_complete(client, workflow_id)

    assert workflow["retries"] == 1
    assert workflow["error_message"] is None
    assert transition_pairs(workflow) == [("INIT", "FAILED"), ("FAILED", "INIT"), *FORWARD_PATH]
    assert_built_in_results(workflow["task_results"], workflow_id, iterations=5000)


@pytest.mark.e2e
def test_cancelled_workflow_stays_cancelled_after_its_running_task_finishes(
    start_server: StartServer,
) -> None:
    scale = 0.2
    server = start_server(TASK_TIME_SCALE=str(scale))
    with server.client() as client:
        workflow_id = start_workflow(client, name="to cancel")
        running = wait_for(
            lambda: get_workflow(client, workflow_id),
            lambda w: w["status"] != "INIT" or w["transitions"] != [],
            what=f"workflow {workflow_id} to leave INIT",
            interval=0.01,
        )
        assert running["status"] in ("PREPARE", "EXECUTE"), "the workflow ran too fast to cancel"

        cancelled = json_of(client.post(f"/workflow/{workflow_id}/cancel"), 200)
        assert cancelled["workflow_id"] == workflow_id
        assert cancelled["current_state"] == "CANCELLED"
        assert cancelled["status"] == "CANCELLED"
        at_cancel = get_workflow(client, workflow_id)

        # Watch until the task that was running has returned and the whole run would be over.
        hold_until = time.monotonic() + FULL_RUN_SECONDS * scale + 0.3
        observed: list[str] = []

        def observe() -> Json:
            stats = get_stats(client)
            observed.append(get_workflow(client, workflow_id)["status"])
            return stats

        wait_for(
            observe,
            lambda stats: (
                stats["worker_pool"]["active_tasks"] == 0
                and stats["worker_pool"]["queue_size"] == 0
                and time.monotonic() >= hold_until
            ),
            what="the cancelled workflow's task to finish",
        )
        assert set(observed) == {"CANCELLED"}

        workflow = get_workflow(client, workflow_id)
        assert workflow["status"] == "CANCELLED"
        assert workflow["next_trigger"] is None
        assert workflow["step_running"] is None
        assert workflow["transitions"] == at_cancel["transitions"]
        assert workflow["transitions"][-1]["to_state"] == "CANCELLED"
        assert workflow["transitions"][-1]["trigger"] == "cancel"
        assert workflow["task_results"] == at_cancel["task_results"]

    _, type_, data = read_stream(server.db_path, f"workflow-{workflow_id}")[-1]
    assert (type_, data.get("to_state")) == ("WorkflowTransitioned", "CANCELLED"), (
        "the cancelled task's late result was recorded after the cancellation"
    )


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("config", "command", "state", "hint"),
    [
        ({"simulate_failure": True}, "next", "FAILED", "retry"),
        ({}, "cancel", "CANCELLED", "delete"),
    ],
    ids=["failed", "cancelled"],
)
def test_next_in_a_finished_state_is_refused_with_409_naming_the_state(
    server: ServerProcess, config: Json, command: str, state: str, hint: str
) -> None:
    with server.client() as client:
        workflow_id = start_workflow(client, config=config, auto_start=False)
        moved = json_of(client.post(f"/workflow/{workflow_id}/{command}"), 200)
        assert moved["current_state"] == state

        refused = json_of(client.post(f"/workflow/{workflow_id}/next"), 409)

    assert refused["error"] == "invalid_transition"
    assert state in refused["detail"]
    assert hint in refused["detail"]


@pytest.mark.e2e
def test_delete_removes_a_finished_workflow_and_refuses_a_running_one(
    server: ServerProcess,
) -> None:
    with server.client() as client:
        finished_id = start_workflow(client, name="finished")
        wait_until_finished_complete(client, finished_id)
        waiting_id = start_workflow(client, name="waiting", auto_start=False)

        response = client.delete(f"/workflow/{finished_id}")
        assert response.status_code == 204
        assert response.content == b""

        gone = json_of(client.get(f"/workflow/{finished_id}"), 404)
        assert gone["error"] == "not_found"
        assert str(finished_id) in gone["detail"]
        assert json_of(client.delete(f"/workflow/{finished_id}"), 404)["error"] == "not_found"
        assert json_of(client.post(f"/workflow/{finished_id}/next"), 404)["error"] == "not_found"

        refused = json_of(client.delete(f"/workflow/{waiting_id}"), 409)
        assert refused["error"] == "invalid_transition"
        assert "INIT" in refused["detail"]
        assert get_workflow(client, waiting_id)["status"] == "INIT"

        counts = get_stats(client)["workflows"]
        assert (counts["total"], counts["complete"], counts["init"]) == (1, 0, 1)

    events = read_stream(server.db_path, f"workflow-{finished_id}")
    types = [type_ for _, type_, _ in events]
    assert types[0] == "WorkflowStarted"
    assert types[-1] == "WorkflowDeleted"
    assert types.count("WorkflowTransitioned") == 4


@pytest.mark.e2e
@pytest.mark.anyio
async def test_fifty_workflows_started_at_once_each_complete_with_four_transitions(
    start_server: StartServer,
) -> None:
    server = start_server(TASK_TIME_SCALE="0.02", MAX_WORKERS="10")
    async with server.async_client() as client:
        responses = await asyncio.gather(
            *(client.post("/workflow/start", json={"name": f"crowd-{n}"}) for n in range(50))
        )
        assert [r.status_code for r in responses] == [201] * 50
        workflow_ids = [int(r.json()["workflow_id"]) for r in responses]
        assert len(set(workflow_ids)) == 50

        async def workflow_of(workflow_id: int) -> Json:
            response = await client.get(f"/workflow/{workflow_id}")
            return json_of(response, 200)

        async def all_workflows() -> list[Json]:
            return list(await asyncio.gather(*(workflow_of(i) for i in workflow_ids)))

        workflows = await wait_for_async(
            all_workflows,
            lambda ws: all(has_finished_complete(w) for w in ws),
            what="all 50 workflows to finish COMPLETE",
            timeout=30.0,
        )
        stats = json_of(await client.get("/execution/stats"), 200)

    for workflow in workflows:
        assert transition_pairs(workflow) == FORWARD_PATH, workflow["workflow_id"]
        assert list(workflow["task_results"]) == TASK_STATES
    counts = stats["workflows"]
    assert counts["complete"] == 50
    assert counts["total"] == 50
    assert stats["worker_pool"]["max_workers"] == 10


@pytest.mark.e2e
def test_workflows_killed_mid_step_resume_after_restart_and_each_step_counts_once(
    start_server: StartServer,
) -> None:
    server = start_server(TASK_TIME_SCALE="0.3", MAX_WORKERS="5")
    with server.client() as client:
        workflow_ids = [start_workflow(client, name=f"crash-{n}") for n in range(10)]
        wait_for(
            lambda: get_stats(client)["workflows"],
            lambda counts: counts["init"] < 10 and counts["complete"] == 0,
            what="some workflows to move past INIT before any completes",
            interval=0.01,
        )
    server.kill()

    streams = [f"workflow-{i}" for i in workflow_ids]
    before = {stream: read_stream(server.db_path, stream) for stream in streams}
    last_types = [events[-1][1] for events in before.values()]
    assert "StepStarted" in last_types, "the kill did not catch any step in flight"
    transitions_before = [
        (data["from_state"], data["to_state"])
        for events in before.values()
        for _, type_, data in events
        if type_ == "WorkflowTransitioned"
    ]
    assert transitions_before, "no transition was recorded before the kill"
    assert ("VALIDATE", "COMPLETE") not in transitions_before

    server.restart()
    with server.client() as client:
        workflows = [wait_until_finished_complete(client, i) for i in workflow_ids]
        counts = get_stats(client)["workflows"]

    for workflow in workflows:
        assert transition_pairs(workflow) == FORWARD_PATH, workflow["workflow_id"]
        assert_built_in_results(workflow["task_results"], workflow["workflow_id"], 5000)
    assert (counts["total"], counts["complete"]) == (10, 10)

    assert read_stream_ids(server.db_path) == set(streams)
    for stream in streams:
        events = read_stream(server.db_path, stream)
        types = [type_ for _, type_, _ in events]
        assert [version for version, _, _ in events] == list(range(1, len(events) + 1)), stream
        assert types.count("WorkflowTransitioned") == 4, (stream, types)
        assert types.count("StepSucceeded") == 5, (stream, types)
        assert "StepFailed" not in types, (stream, types)
        moves = [
            (data["from_state"], data["to_state"])
            for _, type_, data in events
            if type_ == "WorkflowTransitioned"
        ]
        assert moves == FORWARD_PATH, stream


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_WORKERS", "abc"),
        ("MAX_WORKERS", "0"),
        ("TASK_TIMEOUT", "-1"),
        ("TASK_TIME_SCALE", "fast"),
        ("API_PORT", "70000"),
        ("LOG_LEVEL", "chatty"),
        ("DATABASE_URL", "mysql://localhost/wf"),
    ],
)
def test_bad_setting_stops_serve_at_once_with_one_line_naming_it(
    run_serve: RunServe, tmp_path: Path, name: str, value: str
) -> None:
    began = time.monotonic()
    finished = run_serve(**{name: value})
    elapsed = time.monotonic() - began

    message = finished.stderr.strip()
    assert finished.returncode != 0, finished.stdout + finished.stderr
    assert len(message.splitlines()) == 1, message
    assert name in message
    assert value in message
    assert elapsed < 10.0
    assert not (tmp_path / "wf.db").exists()


@pytest.mark.e2e
def test_log_file_has_one_line_per_state_change_naming_the_workflow(
    server: ServerProcess,
) -> None:
    with server.client() as client:
        workflow_ids = [start_workflow(client, name=f"logged-{n}") for n in range(2)]
        for workflow_id in workflow_ids:
            wait_until_finished_complete(client, workflow_id)

    expected = [f"{a} -> {b}" for a, b in FORWARD_PATH]
    for workflow_id in workflow_ids:
        names_it = re.compile(rf"\bworkflow\W*{workflow_id}\b", re.IGNORECASE)

        def state_changes(names_it: re.Pattern[str] = names_it) -> list[str]:
            text = server.log_path.read_text(encoding="utf-8")
            return [line for line in text.splitlines() if names_it.search(line) and " -> " in line]

        lines = wait_for(
            state_changes,
            lambda found: len(found) >= len(expected),
            what=f"the log lines of workflow {workflow_id}",
        )
        changes = [re.findall(r"\b[A-Z]+ -> [A-Z]+\b", line) for line in lines]
        assert changes == [[change] for change in expected], lines
