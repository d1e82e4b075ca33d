"""`rebuild-projections --check` on read models that are behind the log, or moving.

A server stopped hard under load leaves read models that lag the log; a running one moves them
on while the check runs. Either way the check compares the live read models with a rebuild at
the position the live ones reached, and reports differences; it never gives up.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.domain.events import StepStarted, encode_event, stream_id
from orchestrator.domain.states import State
from orchestrator.domain.upcasting import CURRENT_SCHEMA
from orchestrator.eventstore.base import NewEvent
from orchestrator.eventstore.sqlite import SQLiteEventStore
from tests.history.anchoring import projection_checkpoint
from tests.history.conftest import (
    RecordedRun,
    ServeDatabase,
    connect,
    head_of,
    run_cli,
)
from tests.history.test_rebuild import WorkflowLoad

pytestmark = pytest.mark.e2e


@pytest.mark.anyio
async def test_check_compares_at_the_live_checkpoint_when_the_log_is_ahead(
    recorded_run: RecordedRun, database: Path, processes: str
) -> None:
    # As a server killed right after an append would leave it: the event is in the log, the
    # read models never applied it.
    workflow_id = recorded_run.workflow_ids["waiting"]
    begun = StepStarted(at=datetime.now(UTC), state=State.EXECUTE, task="execute")
    store = SQLiteEventStore(str(database))
    await store.open()
    try:
        stream = stream_id(workflow_id)
        await store.append(
            stream,
            len(await store.read_stream(stream)),
            [NewEvent(type="StepStarted", data=encode_event(begun), schema_version=CURRENT_SCHEMA)],
        )
    finally:
        await store.close()
    assert projection_checkpoint(database) == head_of(database) - 1

    checked = run_cli(database, "rebuild-projections", "--check", "--processes", processes)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stderr.splitlines()[-1] == (
        f"the read models match a rebuild from {recorded_run.head} events"
    )


def test_check_reports_read_models_whose_checkpoint_was_rolled_back(
    recorded_run: RecordedRun, database: Path, processes: str
) -> None:
    # Rows saved past their checkpoint: what a rebuild up to that checkpoint shows differently.
    with connect(database) as connection:
        connection.execute(
            "UPDATE projection_checkpoints SET position = ? WHERE name = 'read_models'",
            (recorded_run.head - 10,),
        )

    checked = run_cli(database, "rebuild-projections", "--check", "--processes", processes)

    assert checked.returncode == 1, checked.stderr
    assert "Traceback" not in checked.stderr
    assert checked.stdout.startswith("DIFFERENCE rows ")
    count = checked.stdout.count("DIFFERENCE ")
    assert checked.stderr.splitlines()[-1] == (
        f"{count} differences between the live read models and a rebuild"
    )


def test_check_beside_a_server_under_load_compares_at_one_position(
    recorded_run: RecordedRun, database: Path, serve: ServeDatabase, processes: str
) -> None:
    server = serve(database)
    with WorkflowLoad(server.base_url) as load:
        load.wait_for_more(2)
        checks = [
            run_cli(database, "rebuild-projections", "--check", "--processes", processes)
            for _ in range(3)
        ]
        load.wait_for_more(2)

    for checked in checks:
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stderr.splitlines()[-1].startswith("the read models match a rebuild from ")
