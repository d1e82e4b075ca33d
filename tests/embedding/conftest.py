"""Fixtures for the embedding tests: a database file per test, instant tasks, and a task that
holds its step running until the test lets it go.

The blocking task sets `entered` once a worker thread runs it and returns once `gate` is set;
`gate` is always set at teardown, so no worker thread outlives a test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.engine.tasks import TaskContext, TaskFunction
from orchestrator.settings import Settings

#: How long a blocking task waits for its gate if a test never opens it.
BACKSTOP = 10.0


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """A SQLite file no other test uses."""
    return f"sqlite:///{tmp_path / 'embedded.db'}"


@pytest.fixture
def settings(database_url: str) -> Settings:
    """That file, instant built-in tasks, and no wait for steps still running at exit."""
    return Settings(
        database_url=database_url, task_time_scale=0, log_file="", shutdown_grace_seconds=0
    )


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Set to let every blocking task return; always set at teardown."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def entered() -> threading.Event:
    """Set once a worker thread has begun running a blocking task."""
    return threading.Event()


@pytest.fixture
def blocking_task(gate: threading.Event, entered: threading.Event) -> TaskFunction:
    """A task that holds its step running until `gate` is set."""

    def wait_for_gate(context: TaskContext) -> dict[str, Any]:
        entered.set()
        if not gate.wait(BACKSTOP):
            raise TimeoutError("the test never opened the gate")
        state = context.state.value if context.state is not None else None
        return {"status": "released", "state": state}

    return wait_for_gate
