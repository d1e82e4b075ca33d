"""The service through an outage of PostgreSQL: while the server cannot be reached, commands get a
503 JSON answer with Retry-After and nothing half-done; once it is back, the same process
serves again without a restart, and the workflows it had in flight finish."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from orchestrator.http.app import create_app
from orchestrator.settings import Settings, parse_database
from tests.contract.conftest import postgres_url
from tests.contract.tcp_proxy import TcpProxy
from tests.settings_for_tests import TESTCLIENT_HOSTS

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

DEADLINE = 20.0


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[TcpProxy]:
    """A proxy in front of this test's schema, cut and restored by the test."""
    url = parse_database(postgres_url(tmp_path)).url
    assert url is not None
    async with TcpProxy.to_url(url) as running:
        yield running


@pytest.fixture
async def client(proxy: TcpProxy, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app on PostgreSQL through the proxy, its lifespan running, and a client of it."""
    schema = parse_database(postgres_url(tmp_path)).schema
    settings = Settings(
        database_url=f"{proxy.url}?schema={schema}",
        task_time_scale=0.02,
        log_file="",
        allowed_hosts=TESTCLIENT_HOSTS,
        shutdown_grace_seconds=0,
    )
    app: Starlette = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def wait_complete(client: httpx.AsyncClient, workflow_id: int) -> dict[str, Any]:
    with anyio.fail_after(DEADLINE):
        while True:
            response = await client.get(f"/workflow/{workflow_id}")
            if response.status_code == 200 and response.json()["current_state"] == "COMPLETE":
                body: dict[str, Any] = response.json()
                if body["current_step"] is None:
                    return body
            await asyncio.sleep(0.05)


async def test_an_outage_is_a_503_with_retry_after_and_the_process_recovers_by_itself(
    client: httpx.AsyncClient, proxy: TcpProxy
) -> None:
    before = await client.post("/workflow/start", json={"name": "before"})
    assert before.status_code == 201, before.text
    in_flight = (await client.post("/workflow/start", json={"name": "in flight"})).json()

    await proxy.cut()
    during = await client.post("/workflow/start", json={"name": "during"})

    assert during.status_code == 503
    assert during.headers["retry-after"] == "5"
    assert during.json()["error"] == "store_unavailable"

    await proxy.resume()
    with anyio.fail_after(DEADLINE):  # the pool reconnects on its own
        while (
            after := await client.post("/workflow/start", json={"name": "after"})
        ).status_code != 201:
            assert after.status_code == 503, after.text
            await asyncio.sleep(0.2)

    for workflow_id in (
        before.json()["workflow_id"],
        in_flight["workflow_id"],
        after.json()["workflow_id"],
    ):
        await wait_complete(client, workflow_id)
    names = [w["name"] for w in (await client.get("/workflows")).json()]
    assert "during" not in names  # the refused command left nothing behind
    assert sorted(names) == ["after", "before", "in flight"]
