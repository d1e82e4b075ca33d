"""Fixtures for the embedding tests: a database file per test, instant tasks, and a task that
holds its step running until the test lets it go.

The blocking task sets `entered` once a worker thread runs it and returns once `gate` is set;
`gate` is always set at teardown, so no worker thread outlives a test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.settings import Settings

# The HTTP suite's gate, entered and blocking_task (a task that holds its step until the gate
# opens; the gate is always opened at teardown).
from tests.http.conftest import blocking_task as blocking_task
from tests.http.conftest import entered as entered
from tests.http.conftest import gate as gate


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
