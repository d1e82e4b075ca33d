"""Workflow config the built-in tasks cannot run is refused, on create and on edit."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from orchestrator.engine.task_types import MAX_ITERATIONS


@pytest.mark.parametrize(
    ("config", "detail"),
    [
        (
            {"iterations": MAX_ITERATIONS + 1},
            f"config iterations must be between 0 and {MAX_ITERATIONS}, got {MAX_ITERATIONS + 1}",
        ),
        ({"iterations": -1}, f"config iterations must be between 0 and {MAX_ITERATIONS}, got -1"),
        ({"iterations": "many"}, "config iterations must be an integer, got 'many'"),
        ({"simulate_failure": "yes"}, "config simulate_failure must be true or false"),
        (
            {"simulate_failure": True, "fail_until_retry": "2"},
            "config fail_until_retry must be a non-negative integer, got '2'",
        ),
    ],
)
@pytest.mark.parametrize("route", ["/workflow/start", "/workflows"])
def test_config_the_built_in_tasks_cannot_run_is_refused_before_anything_is_recorded(
    client: TestClient, route: str, config: dict[str, Any], detail: str
) -> None:
    before = client.get("/health").json()["log_position"]

    response = client.post(route, json={"name": "bad config", "config": config})

    assert response.status_code == 422
    assert response.json() == {"error": "validation_error", "detail": detail}
    assert client.get("/health").json()["log_position"] == before


def test_an_edit_to_config_the_tasks_cannot_run_is_refused(client: TestClient) -> None:
    created = client.post("/workflows", json={"name": "editable"}).json()

    response = client.put(
        f"/workflows/{created['workflow_id']}", json={"config": {"iterations": 1.5}}
    )

    assert response.status_code == 422
    assert response.json()["detail"] == "config iterations must be an integer, got 1.5"
    assert client.get(f"/workflows/{created['workflow_id']}").json()["version"] == 1
