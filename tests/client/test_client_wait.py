"""`Client.wait`: the workflow once it settles in an awaited state, or a timeout naming where
it is."""

from __future__ import annotations

import time

import pytest

from orchestrator.client import TERMINAL_STATES, Client, NotFound, WaitTimeout

pytestmark = pytest.mark.e2e


def test_wait_returns_a_workflow_that_settled_in_each_terminal_state(client: Client) -> None:
    complete = client.start("complete").workflow_id
    failed = client.start("failed", config={"simulate_failure": True}).workflow_id
    cancelled = client.start("cancelled", auto_start=False).workflow_id
    client.cancel(cancelled)

    statuses = [
        client.wait(workflow_id, 15).status for workflow_id in (complete, failed, cancelled)
    ]
    finished = client.get(complete)

    assert statuses == ["COMPLETE", "FAILED", "CANCELLED"]
    assert set(TERMINAL_STATES) == {"COMPLETE", "FAILED", "CANCELLED"}
    # COMPLETE counts once its finalize step is recorded, not at the transition into it.
    assert (finished.step_running, finished.task_results["COMPLETE"]["status"]) == (
        None,
        "completed",
    )


def test_wait_times_out_naming_the_workflow_and_its_last_state(client: Client) -> None:
    workflow_id = client.start("stays", auto_start=False).workflow_id

    began = time.monotonic()
    with pytest.raises(WaitTimeout) as raised:
        client.wait(workflow_id, timeout=0.3)
    waited = time.monotonic() - began

    error = raised.value
    assert isinstance(error, TimeoutError)
    assert (error.workflow_id, error.last_status, error.timeout) == (workflow_id, "INIT", 0.3)
    assert str(error) == (
        f"workflow {workflow_id} did not reach CANCELLED, COMPLETE, FAILED within 0.3 s; it is INIT"
    )
    assert 0.3 <= waited < 3.0
    assert client.get(workflow_id).status == "INIT"


def test_wait_on_an_unknown_workflow_is_not_found_at_once(client: Client) -> None:
    began = time.monotonic()
    with pytest.raises(NotFound):
        client.wait(404, timeout=10)

    assert time.monotonic() - began < 5


def test_wait_refuses_a_state_the_api_does_not_have(client: Client) -> None:
    with pytest.raises(ValueError, match="COMPLETED"):
        client.wait(1, timeout=1, states={"COMPLETED"})
