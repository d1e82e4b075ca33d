"""Reading a workflow from a real server and waiting for it to finish, for the e2e and history
tests (both drive `orchestrator serve` over HTTP)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.waiting import wait_for

Json = dict[str, Any]


def get_workflow(client: httpx.Client, workflow_id: int) -> Json:
    """GET /workflow/{id}, checked to be a 200."""
    response = client.get(f"/workflow/{workflow_id}")
    assert response.status_code == 200, f"{response.url}: {response.status_code} {response.text}"
    body: Json = response.json()
    return body


def has_finished_complete(workflow: Json) -> bool:
    """True once the workflow is COMPLETE and its finalize step has been recorded."""
    return (
        workflow["status"] == "COMPLETE"
        and workflow["step_running"] is None
        and "COMPLETE" in workflow["task_results"]
    )


def wait_until_finished_complete(client: httpx.Client, workflow_id: int) -> Json:
    """The workflow once it has finished COMPLETE."""
    return wait_for(
        lambda: get_workflow(client, workflow_id),
        has_finished_complete,
        what=f"workflow {workflow_id} to finish COMPLETE",
    )
