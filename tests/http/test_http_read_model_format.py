"""Read models written in an older format are rebuilt from the log when the server starts."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from orchestrator.http.app import create_app
from orchestrator.projections.packed_states import StateCodec
from orchestrator.projections.sqlite import READ_MODEL_FORMAT
from orchestrator.settings import Settings
from tests.http.conftest import DEADLINE
from tests.settings_for_tests import TESTCLIENT_HOSTS


def settings_for(path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{path}",
        task_time_scale=0,
        log_file="",
        allowed_hosts=TESTCLIENT_HOSTS,
    )


def run_one_workflow(path: Path) -> dict[str, Any]:
    with TestClient(create_app(settings_for(path))) as client:
        workflow_id = client.post("/workflow/start", json={"name": "old"}).json()["workflow_id"]
        deadline = time.monotonic() + DEADLINE
        while (
            "COMPLETE"
            not in (body := client.get(f"/workflow/{workflow_id}").json())["task_results"]
        ):
            assert time.monotonic() < deadline, body
            time.sleep(0.005)  # poll interval; the deadline above bounds the wait
        return dict(body)


def make_format_one(path: Path) -> None:
    """Make the stored rows look as the first release wrote them: no format row, no new fields,
    every state JSON text."""
    with sqlite3.connect(path) as conn:
        states = StateCodec()
        states.learn(conn.execute("SELECT id, kind, dictionary FROM projection_dictionaries"))
        for kind, id_, state in conn.execute("SELECT kind, id, state FROM projection_rows"):
            conn.execute(
                "UPDATE projection_rows SET state = ? WHERE kind = ? AND id = ?",
                (states.unpack(state).decode(), kind, id_),
            )
        conn.execute("DELETE FROM projection_checkpoints WHERE name = 'format'")
        conn.execute(
            "UPDATE projection_rows SET state = json_remove(state, '$.created_at', "
            "'$.task_names', '$.transitions[0].version', '$.transitions[1].version')"
        )
    conn.close()


def test_rows_of_an_older_format_are_rebuilt_at_start_with_the_new_fields(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wf.db"
    before = run_one_workflow(path)
    make_format_one(path)

    with TestClient(create_app(settings_for(path))) as client:
        after = client.get(f"/workflow/{before['workflow_id']}").json()

    assert after == before
    assert after["created_at"] is not None
    assert [t["id"] for t in after["transitions"]] == [4, 7, 10, 13]
    assert after["task_results"]["INIT"]["task_type"] == "initialize"
    with sqlite3.connect(path) as conn:
        [(stored,)] = conn.execute(
            "SELECT position FROM projection_checkpoints WHERE name = 'format'"
        ).fetchall()
    conn.close()
    assert stored == READ_MODEL_FORMAT


def test_rows_of_the_current_format_are_kept_as_they_are(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    before = run_one_workflow(path)
    with sqlite3.connect(path) as conn:
        # A mark the projector would never write: it survives only if nothing was rebuilt.
        conn.execute("UPDATE projection_rows SET status = 'MARKED'")
    conn.close()

    with TestClient(create_app(settings_for(path))) as client:
        assert client.get(f"/workflow/{before['workflow_id']}").status_code == 200

    with sqlite3.connect(path) as conn:
        statuses = {row[0] for row in conn.execute("SELECT status FROM projection_rows")}
    conn.close()
    assert statuses == {"MARKED"}
