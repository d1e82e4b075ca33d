"""The `store` fixture: every contract test runs once per event-store backend, on fresh storage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.backend import Backend, make_backend
from orchestrator.eventstore.base import EventStore
from orchestrator.settings import Database

BACKENDS = [
    "memory",
    "sqlite",
    # "postgres" goes here once its backend exists: add
    # pytest.param("postgres", marks=pytest.mark.postgres) and build it in `make_storage`
    # from TEST_DATABASE_URL on a fresh schema per test, calling
    # pytest.skip("TEST_DATABASE_URL is unset: no PostgreSQL server to test against")
    # when the variable is missing (STYLE.md, Tests).
]


def make_storage(backend: str, tmp_path: Path) -> Backend:
    """New, unopened storage of `backend` on files no other test uses, from the factory the
    server and the tools use."""
    if backend == "memory":
        return make_backend(Database(backend="memory"))
    if backend == "sqlite":
        return make_backend(Database(backend="sqlite", path=str(tmp_path / "events.db")))
    raise ValueError(f"unknown backend {backend!r}; known: {BACKENDS}")


def make_store(backend: str, tmp_path: Path) -> EventStore:
    """A new, unopened event store of `backend` on storage no other test uses."""
    return make_storage(backend, tmp_path).store


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend under test."""
    name: str = request.param
    return name


@pytest.fixture
async def store(backend: str, tmp_path: Path) -> AsyncIterator[EventStore]:
    """An open, empty event store of each backend, closed after the test."""
    event_store = make_store(backend, tmp_path)
    await event_store.open()
    try:
        yield event_store
    finally:
        await event_store.close()


@pytest.fixture
async def second_store(backend: str, tmp_path: Path) -> AsyncIterator[EventStore]:
    """Another open, empty store of the same backend, on storage of its own (a second log)."""
    directory = tmp_path / "second"
    directory.mkdir()
    event_store = make_store(backend, directory)
    await event_store.open()
    try:
        yield event_store
    finally:
        await event_store.close()
