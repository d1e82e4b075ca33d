"""Fixtures: the e2e suite's real server (`start_server`, `server`: `orchestrator serve` on a
free port with a fresh SQLite file and instant tasks) and clients of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from orchestrator.client import AsyncClient, Client, RetryPolicy
from tests.e2e.conftest import ServerProcess
from tests.e2e.conftest import server as server
from tests.e2e.conftest import start_server as start_server

#: Quick retries, so a test that exhausts them takes milliseconds.
QUICK = RetryPolicy(max_retries=3, backoff=0.01, max_backoff=0.05)


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    """A blocking client of a fresh server."""
    with Client(server.base_url, retry=QUICK) as opened:
        yield opened


@pytest.fixture
async def async_client(server: ServerProcess) -> AsyncIterator[AsyncClient]:
    """An async client of a fresh server."""
    async with AsyncClient(server.base_url, retry=QUICK) as opened:
        yield opened
