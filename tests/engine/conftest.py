"""Fixtures for the engine tests: a started runtime on the in-memory store, no HTTP.

Every state runs a `succeeding` fake unless a test registers another task on `registry` (the
coordinator keeps that object, so it may be changed after the start). A test whose tasks are
held at `gate` need not release it: teardown does, lets the engine record every outcome, and
only then stops the runtime, so no worker thread outlives a test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from orchestrator.engine.tasks import TaskRegistry
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from tests.engine.fake_tasks import Calls, Gate, registry_of
from tests.engine.harness import engine_settings, quiesce, running


@pytest.fixture
def calls() -> Calls:
    """The calls of every fake task of this test."""
    return Calls()


@pytest.fixture
def gate() -> Iterator[Gate]:
    """Holds `gate.held` tasks until released; always released at teardown."""
    held = Gate()
    yield held
    held.release()


@pytest.fixture
def registry(calls: Calls) -> TaskRegistry:
    """Every state runs a succeeding fake; tests register others for the states they test."""
    return registry_of(calls)


@pytest.fixture
def settings() -> Settings:
    """In memory, instant tasks; a module overrides this fixture for other settings."""
    return engine_settings()


@pytest.fixture
async def runtime(settings: Settings, registry: TaskRegistry, gate: Gate) -> AsyncIterator[Runtime]:
    """A started runtime; at teardown the gate opens and every outcome is recorded first."""
    async with running(settings, registry) as started:
        try:
            yield started
        finally:
            gate.release()
            await quiesce(started)
