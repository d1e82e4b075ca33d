"""The blocking client's workflow methods against a real server: each answer is typed and
matches what the server recorded."""

from __future__ import annotations

import pytest

from orchestrator.client import (
    Client,
    ExecutionStatus,
    NotFound,
    RetryResult,
    State,
    StepResult,
    Transition,
    Workflow,
    WorkflowStarted,
)

pytestmark = pytest.mark.e2e

FORWARD = [
    ("INIT", "PREPARE"),
    ("PREPARE", "EXECUTE"),
    ("EXECUTE", "VALIDATE"),
    ("VALIDATE", "COMPLETE"),
]


def test_start_then_wait_returns_the_completed_workflow_with_every_result(
    client: Client,
) -> None:
    started = client.start("nightly", description="d", config={"iterations": 10})

    workflow = client.wait(started.workflow_id, timeout=15)

    assert isinstance(started, WorkflowStarted)
    assert (started.name, started.status, started.current_state) == ("nightly", "INIT", "INIT")
    assert isinstance(workflow, Workflow)
    assert workflow.status == State.COMPLETE
    assert workflow.step_running is None
    assert (workflow.description, workflow.config) == ("d", {"iterations": 10})
    assert list(workflow.task_results) == ["INIT", "PREPARE", "EXECUTE", "VALIDATE", "COMPLETE"]
    assert workflow.task_results["EXECUTE"]["computation_result"] == sum(i * i for i in range(10))
    assert [(t.from_state, t.to_state) for t in workflow.transitions] == FORWARD
    assert workflow.completed_at is not None and workflow.started_at is not None


def test_get_at_version_shows_the_workflow_as_it_was_after_that_event(client: Client) -> None:
    workflow_id = client.start("history").workflow_id
    final = client.wait(workflow_id, timeout=15)

    first = client.get(workflow_id, at_version=1)

    assert (first.status, first.transitions, first.version) == ("INIT", [], 1)
    assert client.get(workflow_id).version == final.version
    with pytest.raises(NotFound) as raised:
        client.get(workflow_id, at_version=final.version + 1)
    assert raised.value.code == "not_found"
    assert f"has no version {final.version + 1}" in raised.value.detail


def test_next_walks_a_manual_workflow_one_state_at_a_time(client: Client) -> None:
    workflow_id = client.start("manual", auto_start=False).workflow_id

    steps = [client.next(workflow_id) for _ in FORWARD]

    assert all(isinstance(step, StepResult) for step in steps)
    assert [step.current_state for step in steps] == [to for _, to in FORWARD]
    assert steps[0].message == "Workflow advanced to PREPARE"
    assert client.wait(workflow_id, timeout=15).status == "COMPLETE"


def test_retry_sends_a_failed_workflow_back_to_init_and_it_completes(client: Client) -> None:
    workflow_id = client.start("flaky", config={"simulate_failure": True}).workflow_id
    failed = client.wait(workflow_id, timeout=15)

    retried = client.retry(workflow_id)
    completed = client.wait(workflow_id, timeout=15, states={State.COMPLETE})

    assert failed.status == "FAILED"
    assert failed.error_message is not None and "simulated failure" in failed.error_message
    assert isinstance(retried, RetryResult)
    assert (retried.retries, retried.current_state) == (1, "INIT")
    assert (completed.status, completed.retries) == ("COMPLETE", 1)


def test_cancel_then_delete_leaves_the_workflow_not_found(client: Client) -> None:
    workflow_id = client.start("doomed", auto_start=False).workflow_id

    cancelled = client.cancel(workflow_id)
    client.delete(workflow_id)

    assert (cancelled.status, cancelled.message) == ("CANCELLED", "Workflow cancelled")
    with pytest.raises(NotFound):
        client.get(workflow_id)
    assert workflow_id not in [workflow.workflow_id for workflow in client.list()]


def test_create_update_and_launch_run_a_created_workflow(client: Client) -> None:
    created = client.create("draft", description="first", config={"iterations": 3})

    renamed = client.update(created.workflow_id, name="final", config={"iterations": 4})
    cleared = client.update(created.workflow_id, description=None)
    launched = client.launch(created.workflow_id)
    done = client.wait(created.workflow_id, timeout=15)

    assert (created.status, created.launched, created.auto_start) == ("INIT", False, False)
    assert (renamed.name, renamed.description, renamed.config) == (
        "final",
        "first",
        {"iterations": 4},
    )
    # A field left UNSET keeps its value; None clears a description.
    assert (cleared.name, cleared.description, cleared.config) == ("final", None, {"iterations": 4})
    assert launched.workflow_id == created.workflow_id
    assert done.task_results["EXECUTE"]["iterations"] == 4


def test_list_filters_by_status_and_pages_with_skip_and_limit(client: Client) -> None:
    waiting = [client.start(f"w{n}", auto_start=False).workflow_id for n in range(3)]
    client.cancel(waiting[1])

    everything = client.list()
    in_init = client.list(status="INIT")
    cancelled = client.list(status=State.CANCELLED)
    second_page = client.list(skip=1, limit=1)

    assert [workflow.workflow_id for workflow in everything] == waiting
    assert [workflow.workflow_id for workflow in in_init] == [waiting[0], waiting[2]]
    assert [workflow.workflow_id for workflow in cancelled] == [waiting[1]]
    assert [workflow.workflow_id for workflow in second_page] == [waiting[1]]


def test_status_and_transitions_describe_a_finished_workflow(client: Client) -> None:
    workflow_id = client.start("described").workflow_id
    client.wait(workflow_id, timeout=15)

    status = client.status(workflow_id)
    transitions = client.transitions(workflow_id)

    assert isinstance(status, ExecutionStatus)
    assert (status.status, status.transitions, status.launched) == ("COMPLETE", 4, True)
    assert all(isinstance(transition, Transition) for transition in transitions)
    assert [(t.from_state, t.to_state, t.trigger) for t in transitions] == [
        (*pair, trigger)
        for pair, trigger in zip(
            FORWARD, ["prepare", "execute", "validate", "complete"], strict=True
        )
    ]
    assert all(t.timestamp == t.created_at for t in transitions)


def test_wait_for_a_state_that_is_not_terminal_returns_as_soon_as_it_is_reached(
    client: Client,
) -> None:
    workflow_id = client.start("step", auto_start=False).workflow_id
    client.next(workflow_id)

    workflow = client.wait(workflow_id, timeout=5, states={"PREPARE"})

    assert workflow.status == "PREPARE"
