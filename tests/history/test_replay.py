"""`orchestrator replay WORKFLOW_ID`: a workflow's history from the log of a real server run.

The expected "state after" column is worked out here from the stored payloads, independently of
the fold the command uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.history.conftest import (
    WORKFLOW_ROLES,
    RecordedRun,
    alter_read_model,
    event_rows,
    payload_of,
    run_cli,
)

pytestmark = pytest.mark.e2e


def stream_rows(database: Path, workflow_id: int) -> list[tuple[Any, ...]]:
    """The stored rows of one workflow's stream, in version order."""
    return [row for row in event_rows(database) if row[1] == f"workflow-{workflow_id}"]


def expected_states_after(rows: list[tuple[Any, ...]]) -> list[str]:
    """The state after each event, in the replay's words: `STATE[, S step running][, deleted]`."""
    state, step, deleted = "INIT", None, False
    described: list[str] = []
    for row in rows:
        payload = payload_of(row)
        event_type = row[3]
        if event_type == "StepStarted":
            step = payload["state"]
        elif event_type in ("StepSucceeded", "StepFailed"):
            step = None
        elif event_type == "WorkflowTransitioned":
            state = payload["to_state"]
            if payload["trigger"] == "cancel":
                step = None
        elif event_type == "WorkflowDeleted":
            deleted = True
        text = state
        if step is not None:
            text += f", {step} step running"
        if deleted:
            text += ", deleted"
        described.append(text)
    return described


def table_lines(stdout: str) -> tuple[str, list[str], list[str]]:
    """The table's header, its event lines, and the lines after the table."""
    lines = stdout.splitlines()
    header, rule = lines[0], lines[1]
    assert set(rule) == {"-"}, f"the header is not underlined: {rule!r}"
    end = lines.index("", 2)
    return header, lines[2:end], lines[end + 1 :]


def test_the_table_lists_every_event_with_the_state_after_it_and_agrees_with_the_read_model(
    recorded_run: RecordedRun, database: Path
) -> None:
    workflow_id = recorded_run.workflow_ids["retried"]
    rows = stream_rows(database, workflow_id)

    replayed = run_cli(database, "replay", str(workflow_id))

    assert replayed.returncode == 0, replayed.stderr
    header, lines, after = table_lines(replayed.stdout)
    state_column = header.index("state after")
    assert len(lines) == len(rows)
    for line, row, state in zip(lines, rows, expected_states_after(rows), strict=True):
        position, version, _day, _time, event_type = line.split()[:5]
        assert (int(position), int(version), event_type) == (row[0], row[2], row[3])
        assert line[state_column:].rstrip() == state
    assert "FAILED" in {line[state_column:].strip() for line in lines}
    assert after == ["folded state COMPLETE agrees with the read model"]


@pytest.mark.parametrize("role", WORKFLOW_ROLES)
def test_every_recorded_workflow_folds_to_what_its_read_model_holds(
    recorded_run: RecordedRun, database: Path, role: str
) -> None:
    workflow_id = recorded_run.workflow_ids[role]
    last_state = expected_states_after(stream_rows(database, workflow_id))[-1].split(",")[0]

    replayed = run_cli(database, "replay", str(workflow_id))

    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert replayed.stdout.rstrip().endswith(
        f"folded state {last_state} agrees with the read model"
    )


def test_at_version_stops_after_that_many_events(recorded_run: RecordedRun, database: Path) -> None:
    workflow_id = recorded_run.workflow_ids["automatic"]
    rows = stream_rows(database, workflow_id)[:4]

    replayed = run_cli(database, "replay", str(workflow_id), "--at-version", "4")

    assert replayed.returncode == 0, replayed.stderr
    header, lines, after = table_lines(replayed.stdout)
    assert [int(line.split()[0]) for line in lines] == [row[0] for row in rows]
    state = expected_states_after(rows)[-1]
    assert lines[-1][header.index("state after") :].rstrip() == state
    assert after[0].startswith(f"state at version 4: {state.split(',')[0]} ")


def test_json_prints_one_object_whose_state_equals_what_the_live_server_answered(
    recorded_run: RecordedRun, database: Path
) -> None:
    workflow_id = recorded_run.workflow_ids["retried"]
    rows = stream_rows(database, workflow_id)

    replayed = run_cli(database, "replay", str(workflow_id), "--json")

    assert replayed.returncode == 0, replayed.stderr
    assert len(replayed.stdout.strip().splitlines()) == 1
    document = json.loads(replayed.stdout)
    assert {"workflow_id", "events", "state"} <= set(document)
    assert document["workflow_id"] == workflow_id
    assert [(e["position"], e["version"], e["type"]) for e in document["events"]] == [
        (row[0], row[2], row[3]) for row in rows
    ]
    assert [e["hash"] for e in document["events"]] == [row[8] for row in rows]
    live = recorded_run.workflows[workflow_id]
    assert document["state"] == live
    assert document["state"]["retries"] == 1
    assert document["state"]["task_results"]["EXECUTE"]["status"] == "executed"


def test_json_at_version_shows_the_state_back_then(
    recorded_run: RecordedRun, database: Path
) -> None:
    workflow_id = recorded_run.workflow_ids["manual"]

    replayed = run_cli(database, "replay", str(workflow_id), "--at-version", "4", "--json")

    assert replayed.returncode == 0, replayed.stderr
    document = json.loads(replayed.stdout)
    assert len(document["events"]) == 4
    assert document["state"]["version"] == 4
    live = recorded_run.workflows[workflow_id]
    assert set(document["state"]) == set(live)
    assert (
        document["state"]["transitions"]
        == live["transitions"][: len(document["state"]["transitions"])]
    )


def test_an_unknown_workflow_exits_non_zero_naming_its_id(database: Path) -> None:
    replayed = run_cli(database, "replay", "9999")

    assert replayed.returncode != 0
    assert "workflow 9999" in replayed.stderr
    assert replayed.stdout == ""


def test_a_read_model_altered_by_hand_is_reported_with_exit_1(
    recorded_run: RecordedRun, database: Path
) -> None:
    workflow_id = recorded_run.workflow_ids["automatic"]
    alter_read_model(database, "workflow", workflow_id, retries=7)

    replayed = run_cli(database, "replay", str(workflow_id))
    as_json = run_cli(database, "replay", str(workflow_id), "--json")

    assert replayed.returncode == 1
    assert replayed.stdout.rstrip().endswith("folded state DIFFERS from the read model in: retries")
    assert as_json.returncode == 1
    document = json.loads(as_json.stdout)
    assert document["read_model_agrees"] is False
    assert document["state"]["retries"] == 0
