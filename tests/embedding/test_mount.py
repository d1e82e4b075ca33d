"""`create_app` mounted in another Starlette application, its lifespan entered by the host's."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

import orchestrator
from orchestrator import create_app
from orchestrator.http import app as http_app
from orchestrator.http.app import runtime_of
from orchestrator.settings import Settings
from tests.settings_for_tests import TESTCLIENT_HOSTS
from tests.waiting import wait_for

#: How long any wait in these tests may take before it counts as a failure.
DEADLINE = 5.0


def host_app(settings: Settings, seen: list[str]) -> tuple[Starlette, Starlette]:
    """A host application with the orchestrator mounted at /orchestrator, as the README shows
    it, noting its own lifespan's steps in `seen`; and the mounted app."""
    api = create_app(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        seen.append("host starting")
        # Starlette runs only the outer app's lifespan: it enters the mounted one's.
        async with api.router.lifespan_context(api):
            seen.append("orchestrator started")
            yield
        seen.append("orchestrator stopped")

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("the host's own page")

    routes = [Route("/", home), Mount("/orchestrator", app=api)]
    return Starlette(routes=routes, lifespan=lifespan), api


def test_the_api_mounted_in_a_host_app_runs_inside_the_host_lifespan(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'mounted.db'}",
        task_time_scale=0,
        log_file="",
        allowed_hosts=TESTCLIENT_HOSTS,
    )
    seen: list[str] = []
    app, api = host_app(settings, seen)
    runtime = runtime_of(api)

    with TestClient(app) as client:
        assert seen == ["host starting", "orchestrator started"]
        assert client.get("/").text == "the host's own page"
        health = client.get("/orchestrator/health")
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "healthy"

        started = client.post("/orchestrator/workflow/start", json={"name": "mounted"})
        assert started.status_code == 201, started.text
        workflow_id = started.json()["workflow_id"]

        def read() -> dict[str, Any]:
            response = client.get(f"/orchestrator/workflow/{workflow_id}")
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        done = wait_for(
            read,
            lambda body: body["status"] == "COMPLETE" and body["step_running"] is None,
            what=f"workflow {workflow_id} to complete",
            timeout=DEADLINE,
        )
        assert set(done["task_results"]) == {"INIT", "PREPARE", "EXECUTE", "VALIDATE", "COMPLETE"}
        listed = client.get("/orchestrator/workflows")
        assert [body["workflow_id"] for body in listed.json()] == [workflow_id]
        assert client.get("/workflows").status_code == 404  # only under its prefix
        assert not runtime.stopping.is_set()

    assert seen[-1] == "orchestrator stopped"
    assert runtime.stopping.is_set()  # the host's shutdown stopped the orchestrator's runtime


def test_create_app_is_importable_from_the_package() -> None:
    assert create_app is http_app.create_app
    assert orchestrator.create_app is http_app.create_app
    assert {"Orchestrator", "create_app"} <= set(dir(orchestrator))
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = orchestrator.nope


def test_importing_the_package_loads_neither_starlette_nor_the_engine() -> None:
    probe = (
        "import sys, orchestrator; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('starlette', 'aiosqlite', 'httpx') or m.startswith('orchestrator.')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]"
