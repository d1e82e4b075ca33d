"""`orchestrator rebuild-projections [--check]` on a real server's database, stopped and live.

A rebuild only reads the log: the events table is compared column by column before and after.
The live case runs the command while a server on the same file keeps completing workflows, then
checks the server's reads against the log itself.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from orchestrator.domain.events import StepStarted, encode_event, stream_id
from orchestrator.domain.states import State
from orchestrator.domain.upcasting import CURRENT_SCHEMA
from orchestrator.eventstore.base import NewEvent
from orchestrator.eventstore.sqlite import SQLiteEventStore
from tests.history.conftest import (
    DEADLINE,
    RecordedRun,
    ServeDatabase,
    alter_read_model,
    connect,
    event_rows,
    get_workflow,
    head_of,
    json_of,
    projection_counters,
    projection_rows,
    read_model_state,
    run_cli,
    start_workflow,
    wait_for,
    wait_until_caught_up,
    wait_until_finished_complete,
    workflow_statuses_from_log,
)

pytestmark = pytest.mark.e2e


PROGRESS = re.compile(
    r"^rebuild: ([\d,]+)/([\d,]+) events, [\d,]+ events/s(?:, ETA [\d.]+ s)?$", re.MULTILINE
)


def test_check_says_the_live_read_models_match_a_rebuild(
    recorded_run: RecordedRun, database: Path, processes: str
) -> None:
    checked = run_cli(database, "rebuild-projections", "--check", "--processes", processes)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout == ""
    assert checked.stderr.splitlines()[-1] == (
        f"the read models match a rebuild from {recorded_run.head} events"
    )


def test_a_rebuild_yields_the_same_rows_and_never_touches_the_log(
    recorded_run: RecordedRun, database: Path, processes: str
) -> None:
    events, rows, counters = (
        event_rows(database),
        projection_rows(database),
        projection_counters(database),
    )

    rebuilt = run_cli(database, "rebuild-projections", "--processes", processes)

    assert rebuilt.returncode == 0, rebuilt.stderr
    assert event_rows(database) == events
    assert head_of(database) == recorded_run.head
    assert projection_rows(database) == rows
    assert projection_counters(database) == counters
    progress = PROGRESS.findall(rebuilt.stderr)
    assert progress, rebuilt.stderr
    assert progress[-1] == (f"{recorded_run.head:,}", f"{recorded_run.head:,}")
    assert rebuilt.stderr.splitlines()[-1].startswith(
        f"rebuilt the read models from {recorded_run.head} events ("
    )
    assert rebuilt.stderr.splitlines()[-1].endswith(" events/s) and swapped them in")


@pytest.mark.anyio
async def test_a_rebuild_never_runs_the_task_of_a_step_left_running(
    recorded_run: RecordedRun, database: Path, processes: str
) -> None:
    workflow_id = recorded_run.workflow_ids["waiting"]
    assert recorded_run.workflows[workflow_id]["status"] == "EXECUTE"
    # As if a server crashed right after recording that the EXECUTE step started: a server
    # would run the step again on its next start; a rebuild must only file it.
    begun = StepStarted(at=datetime.now(UTC), state=State.EXECUTE, task="execute")
    store = SQLiteEventStore(str(database))
    await store.open()
    try:
        stream = stream_id(workflow_id)
        await store.append(
            stream,
            len(await store.read_stream(stream)),
            [
                NewEvent(
                    type="StepStarted",
                    data=encode_event(begun),
                    metadata={"actor": "engine"},
                    schema_version=CURRENT_SCHEMA,
                )
            ],
        )
    finally:
        await store.close()
    events = event_rows(database)

    rebuilt = run_cli(database, "rebuild-projections", "--processes", processes)

    assert rebuilt.returncode == 0, rebuilt.stderr
    assert event_rows(database) == events
    assert head_of(database) == recorded_run.head + 1
    with connect(database) as connection:
        row = connection.execute(
            "SELECT status, needs_engine FROM projection_rows WHERE kind = 'workflow' AND id = ?",
            (workflow_id,),
        ).fetchone()
    assert row == ("EXECUTE", 1)
    assert read_model_state(database, "workflow", workflow_id)["step"] == "EXECUTE"


def test_check_reports_a_row_altered_by_hand_and_a_rebuild_repairs_it(
    recorded_run: RecordedRun, database: Path, processes: str
) -> None:
    workflow_id = recorded_run.workflow_ids["automatic"]
    rows = projection_rows(database)
    with connect(database) as connection:
        connection.execute(
            "UPDATE projection_rows SET status = 'FAILED' WHERE kind = 'workflow' AND id = ?",
            (workflow_id,),
        )

    checked = run_cli(database, "rebuild-projections", "--check", "--processes", processes)

    assert checked.returncode == 1
    report = checked.stdout.splitlines()
    assert report[0] == f"DIFFERENCE rows workflow {workflow_id}:"
    assert report[1].startswith("  live:    FAILED {")
    assert report[2].startswith("  rebuilt: COMPLETE {")
    assert len(report) == 3
    assert checked.stderr.splitlines()[-1] == (
        "1 differences between the live read models and a rebuild"
    )

    assert run_cli(database, "rebuild-projections", "--processes", processes).returncode == 0

    assert projection_rows(database) == rows
    rechecked = run_cli(database, "rebuild-projections", "--check", "--processes", processes)
    assert rechecked.returncode == 0, rechecked.stdout


def test_check_reports_a_counter_altered_by_hand_and_a_rebuild_repairs_it(
    recorded_run: RecordedRun, database: Path, processes: str
) -> None:
    counters = projection_counters(database)
    complete = recorded_run.stats["workflows"]["complete"]
    assert counters["workflow:COMPLETE"] == complete
    with connect(database) as connection:
        connection.execute(
            "UPDATE projection_counters SET count = count + 5 WHERE name = 'workflow:COMPLETE'"
        )

    checked = run_cli(database, "rebuild-projections", "--check", "--processes", processes)

    assert checked.returncode == 1
    assert checked.stdout.splitlines() == [
        "DIFFERENCE counters workflow:COMPLETE:",
        f"  live:    {complete + 5}",
        f"  rebuilt: {complete}",
    ]
    assert run_cli(database, "rebuild-projections", "--processes", processes).returncode == 0
    assert projection_counters(database) == counters


def test_a_removed_row_is_reported_as_missing_from_the_live_side(
    recorded_run: RecordedRun, database: Path, processes: str
) -> None:
    task_id = recorded_run.task_id
    with connect(database) as connection:
        connection.execute("DELETE FROM projection_rows WHERE kind = 'task' AND id = ?", (task_id,))

    checked = run_cli(database, "rebuild-projections", "--check", "--processes", processes)

    assert checked.returncode == 1
    report = checked.stdout.splitlines()
    assert report[:2] == [f"DIFFERENCE rows task {task_id}:", "  live:    None"]
    assert report[2].startswith("  rebuilt: COMPLETED {")


class WorkflowLoad:
    """A thread that starts workflows one after another and waits for each to finish."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.finished: list[int] = []
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="workflow-load", daemon=True)

    def __enter__(self) -> WorkflowLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(DEADLINE)
        assert not self._thread.is_alive(), "the load thread did not stop"

    def _run(self) -> None:
        try:
            with httpx.Client(base_url=self.base_url, timeout=10.0) as client:
                while not self._stop.is_set():
                    workflow_id = start_workflow(client, "load", config={"iterations": 20})
                    wait_until_finished_complete(client, workflow_id)
                    self.finished.append(workflow_id)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.failure = exc

    def wait_for_more(self, count: int) -> None:
        """Return once `count` more workflows have finished than now."""
        target = len(self.finished) + count
        wait_for(
            lambda: (len(self.finished), self.failure),
            lambda seen: seen[0] >= target or seen[1] is not None,
            what=f"{count} more workflows to finish under load",
        )
        assert self.failure is None, f"the load failed: {self.failure!r}"


def test_a_rebuild_beside_a_live_server_keeps_its_reads_right(
    recorded_run: RecordedRun, database: Path, serve: ServeDatabase, processes: str
) -> None:
    server = serve(database)
    with server.client() as client, WorkflowLoad(server.base_url) as load:
        load.wait_for_more(3)

        rebuilt = run_cli(database, "rebuild-projections", "--processes", processes)

        assert rebuilt.returncode == 0, rebuilt.stderr
        assert "swapped them in" in rebuilt.stderr
        load.wait_for_more(3)
    assert load.failure is None, repr(load.failure)
    with server.client() as client:
        wait_until_caught_up(client)
        before = json_of(client.get("/execution/stats"), 200)["workflows"]

        after_swap = start_workflow(client, "after the swap")
        finished = wait_until_finished_complete(client, after_swap)
        wait_until_caught_up(client)
        after = json_of(client.get("/execution/stats"), 200)["workflows"]

        from_log = workflow_statuses_from_log(database)
        served = {
            workflow_id: get_workflow(client, workflow_id)["status"] for workflow_id in from_log
        }
    assert finished["transitions"][-1]["to_state"] == "COMPLETE"
    assert after["complete"] == before["complete"] + 1
    assert after["total"] == before["total"] + 1
    assert served == from_log
    for state in ("INIT", "PREPARE", "EXECUTE", "VALIDATE", "COMPLETE", "FAILED", "CANCELLED"):
        assert after[state.lower()] == sum(1 for s in from_log.values() if s == state), state
    assert after["total"] == len(from_log)
    assert set(load.finished) <= set(from_log)
    checked = run_cli(database, "rebuild-projections", "--check", "--processes", processes)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_rebuild_that_repairs_the_read_models_is_seen_by_the_server_running_on_them(
    recorded_run: RecordedRun, database: Path, serve: ServeDatabase, processes: str
) -> None:
    workflow_id = recorded_run.workflow_ids["automatic"]
    complete = recorded_run.stats["workflows"]["complete"]
    alter_read_model(database, "workflow", workflow_id, name="damaged")
    with connect(database) as connection:
        connection.execute(
            "UPDATE projection_counters SET count = count + 5 WHERE name = 'workflow:COMPLETE'"
        )
    server = serve(database)
    with server.client() as client:
        assert get_workflow(client, workflow_id)["name"] == "damaged"

        repaired = run_cli(database, "rebuild-projections", "--processes", processes)

        assert repaired.returncode == 0, repaired.stderr
        # One more workflow, so the server saves at least once after the swap.
        wait_until_finished_complete(client, start_workflow(client, "after the repair"))
        wait_until_caught_up(client)
        assert projection_counters(database)["workflow:COMPLETE"] == complete + 1
        served = wait_for(
            lambda: (
                get_workflow(client, workflow_id)["name"],
                json_of(client.get("/execution/stats"), 200)["workflows"]["complete"],
            ),
            lambda seen: seen == ("automatic", complete + 1),
            what="the server to serve the repaired read models",
            timeout=3.0,
        )
    assert served == ("automatic", complete + 1)
