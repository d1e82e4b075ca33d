"""Idempotency keys on a SQLite file: they, and the commands they claimed, outlive a restart.

Each test runs one app, stops it (as a crash would leave things: the key was committed with the
command, the answer maybe not), then starts a second app on the same file and retries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from orchestrator.domain.commands import AdvanceWorkflow, StartWorkflow
from orchestrator.engine.claims import claiming
from orchestrator.eventstore.keys import IdempotencyClaim
from orchestrator.http.app import create_app, runtime_of
from orchestrator.http.idempotency_key import request_hash
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings

DEADLINE = 5.0


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    """The in-memory settings, pointed at a SQLite file instead."""
    return dataclasses.replace(settings, database_url=f"sqlite:///{tmp_path / 'keys.db'}")


@contextmanager
def serving(settings: Settings) -> Iterator[tuple[TestClient, Runtime]]:
    """A running app on the file; it stops at the end of the block."""
    app = create_app(settings)
    with TestClient(app) as client:
        yield client, runtime_of(app)


def run(client: TestClient, work: Callable[[], Awaitable[Any]]) -> Any:
    """Run the coroutine function `work` on the app's event loop."""
    assert client.portal is not None
    return client.portal.call(work)


def quiet(client: TestClient, runtime: Runtime) -> int:
    """Wait until nothing runs by itself and the read models hold the log; the log's head."""

    async def settle() -> int:
        async with asyncio.timeout(DEADLINE):
            await runtime.coordinator.wait_idle()
            head = await runtime.store.head_position()
            await runtime.projector.wait_for(head)
        return head

    head: int = run(client, settle)
    return head


def test_a_key_and_its_answer_survive_a_restart(settings: Settings) -> None:
    body, headers = {"name": "durable"}, {"Idempotency-Key": "durable-1"}
    with serving(settings) as (client, runtime):
        first = client.post("/workflow/start", json=body, headers=headers)
        head = quiet(client, runtime)

    with serving(settings) as (client, runtime):
        repeat = client.post("/workflow/start", json=body, headers=headers)
        other = client.post("/workflow/start", json={"name": "other"}, headers=headers)
        assert quiet(client, runtime) == head

    assert first.status_code == repeat.status_code == 201
    assert repeat.content == first.content
    assert repeat.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 422


def test_a_start_recorded_just_before_a_crash_is_answered_after_the_restart(
    settings: Settings,
) -> None:
    body = b'{"name": "crashed", "auto_start": false}'
    bound = request_hash("POST", "/workflow/start", body)
    claim = IdempotencyClaim(key="crash-1", request_hash=bound, created_at=time.time())
    with serving(settings) as (client, runtime):

        async def record_the_command_then_die() -> None:
            with claiming(claim):
                await runtime.coordinator.start(StartWorkflow(workflow_id=0, name="crashed"))

        run(client, record_the_command_then_die)
        head = quiet(client, runtime)

    with serving(settings) as (client, runtime):
        retry = client.post(
            "/workflow/start",
            content=body,
            headers={"Idempotency-Key": "crash-1", "Content-Type": "application/json"},
        )
        assert quiet(client, runtime) == head
        listed = client.get("/workflows").json()

    assert retry.status_code == 201
    assert retry.json() == {
        "message": "Workflow started",
        "workflow_id": 1,
        "name": "crashed",
        "status": "INIT",
        "current_state": "INIT",
    }
    assert [w["workflow_id"] for w in listed] == [1]


def test_a_next_whose_step_was_cut_by_a_crash_is_answered_once_the_resumed_step_ends(
    settings: Settings,
) -> None:
    with serving(settings) as (client, runtime):
        response = client.post("/workflow/start", json={"name": "m", "auto_start": False})
        workflow_id = response.json()["workflow_id"]
        claim = IdempotencyClaim(
            key="next-1",
            request_hash=request_hash("POST", f"/workflow/{workflow_id}/next", b""),
            created_at=time.time(),
        )

        async def begin_the_step_then_die() -> None:
            with claiming(claim):  # the step is recorded as begun; no task runs it here
                begin = AdvanceWorkflow(task="initialize")
                await runtime.service.execute(workflow_id, begin, {"actor": "api"})

        run(client, begin_the_step_then_die)

    with serving(settings) as (client, runtime):  # resumes the step on start-up
        retry = client.post(f"/workflow/{workflow_id}/next", headers={"Idempotency-Key": "next-1"})
        quiet(client, runtime)
        events = client.get(f"/workflow/{workflow_id}/events").json()

    assert retry.status_code == 200
    assert retry.json() == {
        "message": "Workflow advanced to PREPARE",
        "workflow_id": workflow_id,
        "current_state": "PREPARE",
        "status": "PREPARE",
    }
    assert retry.headers["Idempotent-Replayed"] == "true"
    commands = [e["metadata"].get("command") for e in events]
    assert commands.count("AdvanceWorkflow") == 1
    assert [e["type"] for e in events].count("StepSucceeded") == 1
