"""The same API on a real SQLite file: workflows run, are read back, and outlive a restart."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from orchestrator.engine.tasks import TaskRegistry
from orchestrator.http.app import create_app
from orchestrator.settings import Settings


@pytest.fixture
def database(tmp_path: Path) -> Path:
    """A fresh database file for each test."""
    return tmp_path / "orchestrator.db"


@pytest.fixture
def settings(settings: Settings, database: Path) -> Settings:
    """The in-memory settings, pointed at a SQLite file instead."""
    return dataclasses.replace(settings, database_url=f"sqlite:///{database}")


def test_health_reports_the_sqlite_database(client: TestClient, database: Path) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json()["database"] == "sqlite"
    assert database.is_file()


def test_an_automatic_workflow_completes_on_sqlite(
    start: Callable[[dict[str, Any]], int], settle: Callable[[int], dict[str, Any]]
) -> None:
    body = settle(start({"name": "on disk", "config": {"iterations": 12}}))

    assert body["status"] == "COMPLETE"
    assert len(body["transitions"]) == 4
    assert body["task_results"]["EXECUTE"]["computation_result"] == sum(i * i for i in range(12))


def test_manual_steps_retry_and_delete_work_on_sqlite(
    client: TestClient,
    start: Callable[[dict[str, Any]], int],
) -> None:
    workflow_id = start(
        {"name": "manual", "auto_start": False, "config": {"simulate_failure": True}}
    )
    assert client.post(f"/workflow/{workflow_id}/next").json()["current_state"] == "FAILED"
    assert client.post(f"/workflow/{workflow_id}/retry").json()["retries"] == 1
    states = [client.post(f"/workflow/{workflow_id}/next").json()["current_state"] for _ in "1234"]
    assert states == ["PREPARE", "EXECUTE", "VALIDATE", "COMPLETE"]

    assert client.delete(f"/workflow/{workflow_id}").status_code == 204
    response = client.get(f"/workflow/{workflow_id}")

    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "detail": f"workflow {workflow_id} does not exist",
    }
    assert client.get("/execution/stats").json()["workflows"]["total"] == 0


def test_workflows_and_stats_outlive_a_restart(settings: Settings) -> None:
    with TestClient(create_app(settings, TaskRegistry())) as first:
        kept = first.post("/workflow/start", json={"name": "kept", "auto_start": False}).json()
        workflow_id = kept["workflow_id"]
        for _ in range(4):
            assert first.post(f"/workflow/{workflow_id}/next").status_code == 200
        before = first.get(f"/workflow/{workflow_id}").json()
        waiting = first.post("/workflow/start", json={"name": "waiting", "auto_start": False})
        assert waiting.status_code == 201

    with TestClient(create_app(settings, TaskRegistry())) as second:
        after = second.get(f"/workflow/{workflow_id}")
        stats = second.get("/execution/stats").json()["workflows"]
        newer = second.post("/workflow/start", json={"name": "newer", "auto_start": False})

    assert after.status_code == 200
    assert after.json() == before
    assert before["status"] == "COMPLETE"
    assert stats["total"] == 2
    assert stats["complete"] == stats["init"] == 1
    assert newer.json()["workflow_id"] > waiting.json()["workflow_id"]
