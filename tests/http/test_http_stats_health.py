"""GET /execution/stats and GET /health: their exact shapes, and counts that match the workflows."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from orchestrator import __version__
from orchestrator.domain.states import State
from orchestrator.engine.tasks import TaskFunction, TaskRegistry
from orchestrator.eventstore import sqlite as sqlite_store
from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.http.app import create_app, runtime_of
from orchestrator.settings import Settings

DEADLINE = 5.0
MAX_WORKERS = 3
NO_WORKFLOWS = {
    "total": 0,
    "init": 0,
    "prepare": 0,
    "execute": 0,
    "validate": 0,
    "complete": 0,
    "failed": 0,
    "cancelled": 0,
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A pool size other than the default, so the stats are seen to report the setting."""
    return dataclasses.replace(settings, max_workers=MAX_WORKERS)


def test_stats_of_a_fresh_server_have_the_documented_shape(client: TestClient) -> None:
    response = client.get("/execution/stats")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "worker_pool": {"max_workers": MAX_WORKERS, "active_tasks": 0, "queue_size": 0},
        "workflows": NO_WORKFLOWS,
        "task_pool": {"max_workers": 2, "active_tasks": 0, "queue_size": 0},
    }


def test_stats_count_workflows_by_state(
    client: TestClient,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    settle(start({"name": "complete"}))
    settle(start({"name": "failed", "config": {"simulate_failure": True}}))
    cancelled = start({"name": "cancelled", "auto_start": False})
    assert client.post(f"/workflow/{cancelled}/cancel").status_code == 200
    start({"name": "init", "auto_start": False})
    prepare = start({"name": "prepare", "auto_start": False})
    assert client.post(f"/workflow/{prepare}/next").status_code == 200
    execute = start({"name": "execute", "auto_start": False})
    for _ in range(2):
        assert client.post(f"/workflow/{execute}/next").status_code == 200

    stats = client.get("/execution/stats").json()

    assert stats["workflows"] == {
        "total": 6,
        "init": 1,
        "prepare": 1,
        "execute": 1,
        "validate": 0,
        "complete": 1,
        "failed": 1,
        "cancelled": 1,
    }


def test_stats_follow_a_workflow_from_state_to_state(
    client: TestClient, start: Callable[[dict[str, Any]], int]
) -> None:
    workflow_id = start({"name": "manual", "auto_start": False})
    seen = [client.get("/execution/stats").json()["workflows"]]
    for _ in range(4):
        assert client.post(f"/workflow/{workflow_id}/next").status_code == 200
        seen.append(client.get("/execution/stats").json()["workflows"])

    states = ["init", "prepare", "execute", "validate", "complete"]
    for counts, state in zip(seen, states, strict=True):
        assert counts == {**NO_WORKFLOWS, "total": 1, state: 1}


def test_stats_show_an_active_task_while_a_step_runs(
    client: TestClient,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
    gate: threading.Event,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    registry.register(State.INIT, blocking_task)
    workflow_id = start({"name": "busy"})
    assert entered.wait(DEADLINE)

    busy = client.get("/execution/stats").json()

    assert busy["worker_pool"] == {"max_workers": MAX_WORKERS, "active_tasks": 1, "queue_size": 0}
    assert busy["workflows"]["init"] == 1
    gate.set()
    assert settle(workflow_id)["status"] == "COMPLETE"
    idle = client.get("/execution/stats").json()
    assert idle["worker_pool"]["active_tasks"] == 0
    assert idle["workflows"] == {**NO_WORKFLOWS, "total": 1, "complete": 1}


def test_health_of_a_fresh_server_has_the_documented_shape(client: TestClient) -> None:
    response = client.get("/health")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "status": "healthy",
        "version": __version__,
        "database": "memory",
        "log_position": 0,
        "projection_position": 0,
        "projection_lag": 0,
    }


def test_health_shows_the_log_advance_and_the_projection_catch_up(
    client: TestClient, start: Callable[[dict[str, Any]], int]
) -> None:
    start({"name": "manual", "auto_start": False})

    body = client.get("/health").json()

    assert body["status"] == "healthy"
    assert body["log_position"] >= 1
    assert body["projection_position"] == body["log_position"]


FULL_REASON = "the last write to /srv/secret/wf.db failed: disk I/O error; ..."


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "the database cannot be written; see the server log"),
        (
            {"Authorization": "Bearer not-one-of-the-tokens-xxxx"},
            "the database cannot be written; see the server log",
        ),
        ({"Authorization": "Bearer health-token-0123456789"}, FULL_REASON),
    ],
)
def test_with_api_token_only_a_caller_with_a_token_gets_the_full_reason(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    reason: str,
) -> None:
    app = create_app(dataclasses.replace(settings, api_tokens=("health-token-0123456789",)))

    async def failing() -> str:
        return FULL_REASON

    monkeypatch.setattr(runtime_of(app).store, "health_problem", failing)
    with TestClient(app) as client:
        response = client.get("/health", headers=headers)

    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert response.json()["reason"] == reason
    assert FULL_REASON in caplog.text  # the log always has it


def test_after_a_failed_write_health_probes_at_most_once_every_5_seconds(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(dataclasses.replace(settings, database_url=f"sqlite:///{tmp_path / 'h.db'}"))
    store = runtime_of(app).store
    assert isinstance(store, SQLiteEventStore)
    probes = 0

    async def refused(work: Any) -> Any:
        nonlocal probes
        probes += work is sqlite_store._probe
        raise StoreUnavailable("the disk is full")

    with TestClient(app) as client:
        monkeypatch.setattr(store, "write_transaction", refused)
        store._guard.write_failure = "the last write failed"
        answers = [client.get("/health").status_code for _ in range(5)]

    assert answers == [503] * 5
    assert probes == 1
