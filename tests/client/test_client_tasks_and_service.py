"""Standalone tasks, the log's history and the service routes through the blocking client."""

from __future__ import annotations

import pytest

from orchestrator.client import (
    Activity,
    Client,
    Event,
    EventPage,
    Health,
    NotFound,
    ServiceInfo,
    StateMachine,
    Stats,
    Task,
    TaskStatus,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_a_task_is_created_pending_runs_to_completed_and_is_listed_by_status(
    client: Client,
) -> None:
    created = client.create_task(
        "crunch", "compute", config={"iterations": 10}, description="sum", max_retries=2
    )

    done = wait_for(
        lambda: client.get_task(created.task_id),
        lambda task: task.status == TaskStatus.COMPLETED,
        what=f"task {created.task_id} to complete",
    )
    completed = client.list_tasks(status="completed")
    pending = client.list_tasks(status=TaskStatus.PENDING)

    assert isinstance(created, Task)
    assert (created.status, created.task_type, created.max_retries) == ("pending", "compute", 2)
    assert created.description == "sum"
    assert done.result == {
        "status": "computed",
        "iterations": 10,
        "computation_result": sum(i * i for i in range(10)),
    }
    assert [task.task_id for task in completed] == [created.task_id]
    assert pending == []


def test_a_workflows_tasks_are_listed_by_workflow_and_a_deleted_task_is_gone(
    client: Client,
) -> None:
    workflow_id = client.start("owner", auto_start=False).workflow_id
    mine = client.create_task("nap", "sleep", config={"duration": 0}, workflow_id=workflow_id)
    other = client.create_task("other", "sleep", config={"duration": 0})

    of_workflow = client.workflow_tasks(workflow_id)
    filtered = client.list_tasks(workflow_id=workflow_id)
    client.delete_task(other.task_id)

    assert [task.task_id for task in of_workflow] == [mine.task_id]
    assert [task.task_id for task in filtered] == [mine.task_id]
    assert mine.workflow_id == workflow_id
    with pytest.raises(NotFound):
        client.get_task(other.task_id)
    assert [task.task_id for task in client.list_tasks()] == [mine.task_id]
    assert [task.task_id for task in client.list_tasks(skip=1)] == []


def test_events_pages_the_log_and_filters_by_type_and_stream(client: Client) -> None:
    first = client.start("one").workflow_id
    second = client.start("two", auto_start=False).workflow_id
    client.wait(first, timeout=15)

    page = client.events(after=0, limit=5)
    rest = client.events(after=page.next_after, limit=1000)
    started = client.events(type="WorkflowStarted")
    of_second = client.events(stream=f"workflow-{second}")

    assert isinstance(page, EventPage)
    assert [event.position for event in page.events] == [1, 2, 3, 4, 5]
    assert page.next_after == 5
    everything = page.events + rest.events
    assert [event.position for event in everything] == list(range(1, page.head + 1))
    assert [event.data["name"] for event in started.events] == ["one", "two"]
    assert [event.type for event in of_second.events] == ["WorkflowStarted"]
    assert all(isinstance(event, Event) and len(event.hash) == 64 for event in everything)


def test_workflow_events_are_the_workflows_stream_in_version_order(client: Client) -> None:
    workflow_id = client.start("fifteen").workflow_id
    workflow = client.wait(workflow_id, timeout=15)

    events = client.workflow_events(workflow_id)

    assert [event.version for event in events] == list(range(1, workflow.version + 1))
    assert {event.stream_id for event in events} == {f"workflow-{workflow_id}"}
    assert events[0].type == "WorkflowStarted"
    assert events[-1].type == "StepSucceeded"


def test_activity_counts_this_minutes_starts_and_ends(client: Client) -> None:
    done = client.start("counted").workflow_id
    client.wait(done, timeout=15)
    client.start("waiting", auto_start=False)

    activity = client.activity(minutes=5)

    assert isinstance(activity, Activity)
    assert len(activity.minutes) == 5
    assert sum(m.started for m in activity.minutes) == 2  # a manual one counts as started
    assert sum(m.finished for m in activity.minutes) == 1
    assert activity.complete


def test_stats_count_the_workflows_by_state(client: Client) -> None:
    done = client.start("done").workflow_id
    client.wait(done, timeout=15)
    client.cancel(client.start("cancelled", auto_start=False).workflow_id)
    client.start("waiting", auto_start=False)

    stats = client.stats()

    assert isinstance(stats, Stats)
    assert (stats.workflows.total, stats.workflows.complete) == (3, 1)
    assert (stats.workflows.cancelled, stats.workflows.init) == (1, 1)
    assert stats.worker_pool.max_workers == 5
    assert stats.task_pool.max_workers == 2


def test_health_info_and_state_machine_describe_the_service(client: Client) -> None:
    client.start("one", auto_start=False)

    health = client.health()
    info = client.info()
    machine = client.state_machine()

    assert isinstance(health, Health)
    assert (health.status, health.database, health.log_position) == ("healthy", "sqlite", 1)
    assert health.reason is None
    assert isinstance(info, ServiceInfo)
    assert (info.version, info.health, info.openapi) == (health.version, "/health", "/openapi.json")
    assert isinstance(machine, StateMachine)
    assert machine.initial_state == "INIT"
    assert machine.states == [
        "INIT",
        "PREPARE",
        "EXECUTE",
        "VALIDATE",
        "COMPLETE",
        "FAILED",
        "CANCELLED",
    ]
    assert ("FAILED", "retry", "INIT") in [
        (row.from_state, row.trigger, row.to_state) for row in machine.transitions
    ]
