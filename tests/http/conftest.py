"""Fixtures for the HTTP tests: the app from the factory, in memory, with instant tasks.

Shared helpers are handed out as fixtures typed with plain `Callable`s rather than imported:
pytest's importlib mode leaves test directories off `sys.path`, and conftest is not for importing.

A test that needs a step to stay running registers `blocking_task` for a state: the task sets
`entered` once a worker thread runs it and returns only when `gate` is set. The `client` fixture
sets `gate` before the lifespan ends, so no worker thread outlives a test.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from orchestrator.engine.tasks import TaskContext, TaskFunction, TaskRegistry
from orchestrator.http.app import create_app, runtime_of
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from tests.settings_for_tests import TESTCLIENT_HOSTS
from tests.waiting import wait_for

#: How long any wait in these tests may take before it counts as a failure.
DEADLINE = 5.0
#: How long a blocking task waits for its gate if a test never opens it.
BACKSTOP = 10.0

TERMINAL = frozenset({"COMPLETE", "FAILED", "CANCELLED"})


def task_result(flat: dict[str, Any], task_type: str) -> dict[str, Any]:
    """A `task_results` entry as the API shows it: the flat result plus the original's wrapper."""
    return {**flat, "success": True, "result": flat, "task_type": task_type}


@pytest.fixture
def settings() -> Settings:
    """In-memory store, instant built-in tasks, no log file; modules override it as needed."""
    return Settings(
        database_url="memory://",
        task_time_scale=0,
        log_file="",
        allowed_hosts=TESTCLIENT_HOSTS,
    )


@pytest.fixture
def registry() -> TaskRegistry:
    """The built-in tasks; the app keeps this object, so a test may register tasks on it later."""
    return TaskRegistry()


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Set to let every `blocking_task` return; always set at teardown."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def entered() -> threading.Event:
    """Set once a worker thread has begun running a `blocking_task`."""
    return threading.Event()


@pytest.fixture
def blocking_task(gate: threading.Event, entered: threading.Event) -> TaskFunction:
    """A task that holds its step in "running" until `gate` is set."""

    def wait_for_gate(context: TaskContext) -> dict[str, Any]:
        entered.set()
        if not gate.wait(BACKSTOP):
            raise TimeoutError("the test never opened the gate")
        return {"status": "released", "state": context.state and context.state.value}

    return wait_for_gate


@pytest.fixture
def app(settings: Settings, registry: TaskRegistry) -> Starlette:
    """The app exactly as the factory builds it."""
    return create_app(settings, registry)


@pytest.fixture
def client(app: Starlette, gate: threading.Event) -> Iterator[TestClient]:
    """A client inside `with`, so the lifespan starts and stops the runtime.

    Server errors come back as responses (not raised) so a test can assert that none is a 500.
    """
    with TestClient(app, raise_server_exceptions=False) as test_client:
        try:
            yield test_client
        finally:
            gate.set()  # before the lifespan ends, so no worker thread is left blocked
            assert test_client.portal is not None
            test_client.portal.call(quiesce, runtime_of(app))


async def quiesce(runtime: Runtime) -> None:
    """Let every driven workflow finish and the projector apply the whole log.

    On Python 3.11 `asyncio.wait_for` loses a cancellation that lands in the same loop turn as
    the event it waits for, so stopping the projector just as a late step appends can hang the
    lifespan forever. Shutting down only once nothing appends any more keeps teardown reliable.
    """
    async with asyncio.timeout(DEADLINE):
        await runtime.coordinator.wait_idle()
        await runtime.projector.wait_for(await runtime.store.head_position())


@pytest.fixture
def start(client: TestClient) -> Callable[[dict[str, Any]], int]:
    """POST /workflow/start with a body, check the 201, and return the new workflow's id."""

    def start_workflow(body: dict[str, Any]) -> int:
        response = client.post("/workflow/start", json=body)
        assert response.status_code == 201, response.text
        workflow_id = response.json()["workflow_id"]
        assert isinstance(workflow_id, int)
        return workflow_id

    return start_workflow


@pytest.fixture
def settle(client: TestClient) -> Callable[[int], dict[str, Any]]:
    """Poll GET /workflow/{id} until nothing more will happen by itself; return that body."""

    def wait_until_settled(workflow_id: int) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            response = client.get(f"/workflow/{workflow_id}")
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        return wait_for(
            read,
            is_settled,
            what=f"workflow {workflow_id} to settle",
            timeout=DEADLINE,
            interval=0.005,
        )

    return wait_until_settled


def is_settled(body: dict[str, Any]) -> bool:
    """No step runs and none is due: terminal (COMPLETE once finalized), or waiting for `next`."""
    if body["step_running"] is not None:
        return False
    if body["status"] == "COMPLETE":
        # finalize runs after the workflow enters COMPLETE; wait for its outcome too.
        return "COMPLETE" in body["task_results"] or body["error_message"] is not None
    return body["status"] in TERMINAL or not body["auto_start"]
