"""The `store` fixture: every contract test runs once per event-store backend, on fresh storage.

PostgreSQL storage is a schema of its own per test (and per `tmp_path` asked for within it) in
the database TEST_DATABASE_URL names, dropped when the test ends; without that variable the
postgres cases are skipped, saying so.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from orchestrator.backend import Backend, make_backend
from orchestrator.eventstore.base import EventStore
from orchestrator.eventstore.postgres_connection import quote_ident
from orchestrator.settings import Database, parse_database

BACKENDS = [
    "memory",
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
]

NO_POSTGRES = (
    "TEST_DATABASE_URL is unset: no PostgreSQL server to test against (set it, e.g. "
    "TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test)"
)

#: The schemas made for the running test, by the `tmp_path` they stand for (so a store made again
#: for the same path, as after a restart, finds the same log); dropped when the test ends.
_schemas: dict[Path, str] = {}


def postgres_test_url() -> str:
    """TEST_DATABASE_URL, or skip the test saying why it cannot run."""
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if not url:
        pytest.skip(NO_POSTGRES)
    return url


def postgres_url(tmp_path: Path) -> str:
    """A DATABASE_URL on a schema of this test's own for `tmp_path` (the same one each time)."""
    base = postgres_test_url()
    schema = _schemas.setdefault(tmp_path, f"test_{uuid.uuid4().hex[:20]}")
    return f"{base}{'&' if '?' in base else '?'}schema={schema}"


async def connect_to_schema(database: Database) -> asyncpg.Connection:
    """A plain asyncpg connection to the test's schema, bypassing the code under test."""
    assert database.url is not None and database.schema is not None
    return await asyncpg.connect(database.url, server_settings={"search_path": database.schema})


async def drop_schemas(url: str, schemas: list[str]) -> None:
    """Drop `schemas` and everything in them from the database at `url`."""
    conn = await asyncpg.connect(url, server_settings={"lock_timeout": "10s"})
    try:
        for schema in schemas:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    finally:
        await conn.close()


@pytest.fixture(autouse=True)
def _drop_test_schemas() -> Iterator[None]:
    """After each test (its stores closed by then), drop the PostgreSQL schemas it used."""
    yield
    if not _schemas:
        return
    schemas = list(_schemas.values())
    _schemas.clear()
    url = parse_database(postgres_test_url()).url
    assert url is not None
    # A thread of its own: the test's event loop is done, and asyncio.run must not replace it.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, drop_schemas(url, schemas)).result()


def make_storage(backend: str, tmp_path: Path) -> Backend:
    """New, unopened storage of `backend` on files (or a PostgreSQL schema) no other test uses,
    from the factory the server and the tools use."""
    if backend == "memory":
        return make_backend(Database(backend="memory"))
    if backend == "sqlite":
        return make_backend(Database(backend="sqlite", path=str(tmp_path / "events.db")))
    if backend == "postgres":
        return make_backend(parse_database(postgres_url(tmp_path)))
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
