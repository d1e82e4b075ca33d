"""Helpers for the Idempotency-Key tests through the app (in-memory store, instant tasks)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.testclient import TestClient

from orchestrator.eventstore.keys import IdempotencyRecord
from orchestrator.http.app import runtime_of
from orchestrator.http.endpoint_table import ENDPOINTS
from orchestrator.http.idempotency_key import COMMAND_METHODS
from tests.waiting import wait_for

DEADLINE = 5.0
#: A request as (method, url, JSON body).
Request = tuple[str, str, dict[str, Any] | None]


def call(client: TestClient, work: Callable[[], Any]) -> Any:
    """Run the coroutine function `work` on the app's event loop."""
    assert client.portal is not None
    return client.portal.call(work)


def quiet(client: TestClient, app: Starlette) -> int:
    """Wait until nothing runs by itself and the read models hold the log; the log's head."""
    runtime = runtime_of(app)

    async def settle() -> int:
        async with asyncio.timeout(DEADLINE):
            await runtime.coordinator.wait_idle()
            await runtime.tasks.wait_idle()
            head = await runtime.store.head_position()
            await runtime.projector.wait_for(head)
        return head

    head: int = call(client, settle)
    return head


def record_of(client: TestClient, app: Starlette, key: str) -> IdempotencyRecord | None:
    """The stored key, if any."""
    runtime = runtime_of(app)

    async def read() -> IdempotencyRecord | None:
        return await runtime.store.read_idempotency(key)

    record: IdempotencyRecord | None = call(client, read)
    return record


def created_id(response: Any) -> int:
    """The id in a 201 answer."""
    assert response.status_code == 201, response.text
    body = response.json()
    value = body.get("workflow_id") if "task_id" not in body else body["task_id"]
    assert isinstance(value, int)
    return value


# One successful request per command route, from a fresh app -----------------------------------


def manual(client: TestClient) -> int:
    """A started workflow that waits in INIT for `next`; its id."""
    return created_id(client.post("/workflow/start", json={"name": "m", "auto_start": False}))


def created(client: TestClient) -> int:
    """A created (not launched) workflow; its id."""
    return created_id(client.post("/workflows", json={"name": "c"}))


def failed(client: TestClient, app: Starlette) -> int:
    """A workflow whose first step failed; its id."""
    body = {"name": "flaky", "config": {"simulate_failure": True}}
    workflow_id = created_id(client.post("/workflow/start", json=body))
    quiet(client, app)
    assert client.get(f"/workflow/{workflow_id}").json()["status"] == "FAILED"
    return workflow_id


def cancelled(client: TestClient) -> int:
    """A cancelled workflow; its id."""
    workflow_id = manual(client)
    assert client.post(f"/workflow/{workflow_id}/cancel").status_code == 200
    return workflow_id


def finished_task(client: TestClient, app: Starlette) -> int:
    """A standalone task that has completed; its id."""
    body = {"name": "t", "task_type": "compute", "config": {"iterations": 10}}
    task_id = created_id(client.post("/tasks", json=body))
    quiet(client, app)
    return task_id


#: "METHOD /path" of every command endpoint (every one takes a key).
COMMANDS = sorted(f"{e.method} {e.path}" for e in ENDPOINTS if e.method in COMMAND_METHODS)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll `condition` until it holds; fail naming `what` after DEADLINE."""
    wait_for(condition, bool, what=what, timeout=DEADLINE, interval=0.005)
