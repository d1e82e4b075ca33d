"""Waiting for the engine behind an app that a TestClient drives, for the HTTP test modules."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.testclient import TestClient

from orchestrator.http.app import runtime_of


def wait_until_idle(client: TestClient, app: Starlette) -> None:
    """Return once the engine drives no workflow, so every late task outcome has been handled."""
    assert client.portal is not None
    client.portal.call(runtime_of(app).coordinator.wait_idle)
