"""The in-process Orchestrator: every command, read and wait, without HTTP, on a SQLite file."""

from __future__ import annotations

import itertools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest

from orchestrator import Orchestrator
from orchestrator.domain.errors import InvalidTransition, StepInProgress, WorkflowNotFound
from orchestrator.domain.events import StepFailed, StepSucceeded, WorkflowTransitioned
from orchestrator.domain.states import State, Trigger
from orchestrator.domain.tasks import TaskStatus
from orchestrator.embedded import LifecycleError, VersionNotFound, WaitTimeout
from orchestrator.engine.task_types import InvalidTaskConfig
from orchestrator.engine.tasks import TaskFunction, TaskRegistry
from orchestrator.settings import Settings
from tests.waiting import wait_for_async

pytestmark = pytest.mark.anyio

#: How long any wait in these tests may take before it counts as a failure.
DEADLINE = 5.0
FORWARD = [State.INIT, State.PREPARE, State.EXECUTE, State.VALIDATE, State.COMPLETE]


@pytest.fixture
async def orchestrator(settings: Settings) -> AsyncIterator[Orchestrator]:
    """A running Orchestrator on the test's own file, with the built-in tasks."""
    async with Orchestrator(settings=settings) as running:
        yield running


async def test_an_automatic_workflow_runs_to_complete_and_its_events_say_how(
    orchestrator: Orchestrator,
) -> None:
    started = await orchestrator.start("nightly", config={"iterations": 10})
    assert started.state is State.INIT
    assert started.auto_start and started.config == {"iterations": 10}

    done = await orchestrator.wait(started.workflow_id, timeout=DEADLINE)

    assert done.state is State.COMPLETE
    assert done.step is None and done.finalized
    assert done.task_results["EXECUTE"]["computation_result"] == sum(i * i for i in range(10))
    assert set(done.task_results) == {state.value for state in FORWARD}
    history = await orchestrator.events(started.workflow_id)
    assert [item.recorded.version for item in history] == list(range(1, len(history) + 1))
    assert history[0].recorded.type == "WorkflowStarted"
    moves = [item.event for item in history if isinstance(item.event, WorkflowTransitioned)]
    assert [(move.from_state, move.to_state) for move in moves] == list(itertools.pairwise(FORWARD))
    succeeded = [item.event.state for item in history if isinstance(item.event, StepSucceeded)]
    assert succeeded == FORWARD
    assert history[-1].after == done  # the log folded agrees with the read model


async def test_a_manual_workflow_moves_one_state_per_next(orchestrator: Orchestrator) -> None:
    workflow = await orchestrator.start("by-hand", auto_start=False)
    workflow_id = workflow.workflow_id
    assert (await orchestrator.get(workflow_id)) == workflow  # read-your-writes

    seen = []
    for expected in FORWARD[1:]:
        workflow = await orchestrator.next(workflow_id)
        seen.append(workflow.state)
        assert workflow.state is expected
        assert (await orchestrator.get(workflow_id)) == workflow

    assert seen == FORWARD[1:]
    assert workflow.step is None and workflow.finalized  # finalize ran on entering COMPLETE
    assert workflow.task_results["COMPLETE"]["status"] == "completed"
    with pytest.raises(InvalidTransition) as refused:
        await orchestrator.next(workflow_id)
    assert refused.value.state == "COMPLETE"
    assert refused.value.allowed == ["edit", "delete"]


async def test_a_failed_workflow_is_retried_to_complete(orchestrator: Orchestrator) -> None:
    started = await orchestrator.start("flaky", config={"simulate_failure": True})

    failed = await orchestrator.wait(started.workflow_id, timeout=DEADLINE)
    assert failed.state is State.FAILED
    assert failed.error_message is not None
    assert failed.error_message.startswith("SimulatedFailure: simulated failure on attempt 1")
    with pytest.raises(InvalidTransition, match="use retry"):
        await orchestrator.next(started.workflow_id)

    retried = await orchestrator.retry(started.workflow_id)
    assert retried.state is State.INIT and retried.retries == 1 and retried.error_message is None

    done = await orchestrator.wait(started.workflow_id, timeout=DEADLINE)
    assert done.state is State.COMPLETE and done.retries == 1
    triggers = [move.trigger for move in done.transitions]
    assert triggers[:2] == [Trigger.FAIL, Trigger.RETRY]
    history = await orchestrator.events(started.workflow_id)
    failures = [item.event for item in history if isinstance(item.event, StepFailed)]
    assert [failure.state for failure in failures] == [State.INIT]


async def test_cancel_records_cancelled_and_discards_the_running_step(
    settings: Settings, blocking_task: TaskFunction, entered: threading.Event
) -> None:
    registry = TaskRegistry()
    registry.register(State.PREPARE, blocking_task, "hold")
    async with Orchestrator(settings=settings, registry=registry) as orchestrator:
        started = await orchestrator.start("doomed")
        await wait_for_async(
            _is_set(entered), bool, what="the PREPARE step to run", timeout=DEADLINE
        )
        running = await orchestrator.wait(started.workflow_id, DEADLINE, states=["PREPARE"])
        assert running.step is State.PREPARE
        with pytest.raises(StepInProgress):
            await orchestrator.next(started.workflow_id)
        with pytest.raises(InvalidTransition, match="cancel it first"):
            await orchestrator.delete(started.workflow_id)

        cancelled = await orchestrator.cancel(started.workflow_id)

        assert cancelled.state is State.CANCELLED and cancelled.step is None
        assert await orchestrator.wait(started.workflow_id, timeout=0) == cancelled
        with pytest.raises(InvalidTransition, match="cannot cancel"):
            await orchestrator.cancel(started.workflow_id)
        history = await orchestrator.events(started.workflow_id)
        assert not any(
            isinstance(item.event, StepSucceeded) and item.event.state is State.PREPARE
            for item in history
        )


async def test_delete_hides_the_workflow_and_keeps_its_history(
    orchestrator: Orchestrator,
) -> None:
    started = await orchestrator.start("short-lived")
    await orchestrator.wait(started.workflow_id, timeout=DEADLINE)

    await orchestrator.delete(started.workflow_id)

    assert await orchestrator.get(started.workflow_id) is None
    assert await orchestrator.list() == []
    assert (await orchestrator.stats()).workflows["COMPLETE"] == 0
    with pytest.raises(WorkflowNotFound):
        await orchestrator.next(started.workflow_id)
    with pytest.raises(WorkflowNotFound):
        await orchestrator.wait(started.workflow_id, timeout=DEADLINE)
    history = await orchestrator.events(started.workflow_id)
    assert history[-1].recorded.type == "WorkflowDeleted"
    assert history[-1].after.deleted


async def test_get_at_a_version_is_the_workflow_as_it_was(orchestrator: Orchestrator) -> None:
    workflow = await orchestrator.start("travel", auto_start=False)
    await orchestrator.next(workflow.workflow_id)
    now = await orchestrator.next(workflow.workflow_id)
    assert now.state is State.EXECUTE

    first = await orchestrator.get(workflow.workflow_id, at_version=1)
    history = await orchestrator.events(workflow.workflow_id)

    assert first is not None and first.version == 1
    assert first.state is State.INIT and first.step is None and first.task_results == {}
    for item in history:
        back_then = await orchestrator.get(workflow.workflow_id, at_version=item.recorded.version)
        assert back_then == item.after
    assert await orchestrator.get(workflow.workflow_id, at_version=now.version) == now
    with pytest.raises(VersionNotFound, match=f"no version {now.version + 1}"):
        await orchestrator.get(workflow.workflow_id, at_version=now.version + 1)
    with pytest.raises(ValueError, match="at_version"):
        await orchestrator.get(workflow.workflow_id, at_version=0)
    assert await orchestrator.get(999, at_version=1) is None


async def test_list_pages_in_id_order_and_filters_by_state(orchestrator: Orchestrator) -> None:
    manual = [await orchestrator.start(f"manual-{n}", auto_start=False) for n in range(3)]
    created = await orchestrator.create("waiting", description="not launched")
    await orchestrator.cancel(manual[1].workflow_id)

    everything = await orchestrator.list()
    assert [w.workflow_id for w in everything] == [
        *(w.workflow_id for w in manual),
        created.workflow_id,
    ]
    assert [w.name for w in await orchestrator.list(skip=1, limit=2)] == ["manual-1", "manual-2"]
    assert [w.workflow_id for w in await orchestrator.list(status="cancelled")] == [
        manual[1].workflow_id
    ]
    assert len(await orchestrator.list(status=State.INIT)) == 3
    with pytest.raises(ValueError, match="state must be one of"):
        await orchestrator.list(status="DONE")
    with pytest.raises(ValueError, match="limit"):
        await orchestrator.list(limit=0)


async def test_create_waits_in_init_until_launch(orchestrator: Orchestrator) -> None:
    created = await orchestrator.create("later", config={"iterations": 3})
    assert created.state is State.INIT and not created.launched and created.step is None

    edited = await orchestrator.update(created.workflow_id, name="sooner")
    assert edited.name == "sooner" and edited.config == {"iterations": 3}
    launched = await orchestrator.launch(created.workflow_id)
    assert launched.launched and launched.step is State.INIT

    done = await orchestrator.wait(created.workflow_id, timeout=DEADLINE)
    assert done.state is State.COMPLETE and done.name == "sooner"
    with pytest.raises(InvalidTransition, match="cannot start"):
        await orchestrator.launch(created.workflow_id)


async def test_stats_count_workflows_by_state(orchestrator: Orchestrator) -> None:
    done = await orchestrator.start("auto")
    await orchestrator.wait(done.workflow_id, timeout=DEADLINE)
    manual = await orchestrator.start("manual", auto_start=False)
    await orchestrator.next(manual.workflow_id)
    cancelled = await orchestrator.start("cancelled", auto_start=False)
    await orchestrator.cancel(cancelled.workflow_id)

    stats = await orchestrator.stats()

    assert stats.workflows == {
        "INIT": 0,
        "PREPARE": 1,
        "EXECUTE": 0,
        "VALIDATE": 0,
        "COMPLETE": 1,
        "FAILED": 0,
        "CANCELLED": 1,
    }
    assert stats.worker_pool.max_workers == orchestrator.settings.max_workers
    assert stats.task_pool.max_workers == orchestrator.settings.task_workers
    assert stats.worker_pool.active_tasks == 0


async def test_wait_gives_up_naming_the_workflow_and_where_it_is(
    orchestrator: Orchestrator,
) -> None:
    workflow = await orchestrator.start("parked", auto_start=False)

    with pytest.raises(WaitTimeout) as timed_out:
        await orchestrator.wait(workflow.workflow_id, timeout=0.05)

    assert str(timed_out.value) == (
        f"workflow {workflow.workflow_id} did not reach COMPLETE, FAILED or CANCELLED within "
        "0.05 s; it is INIT"
    )
    assert isinstance(timed_out.value, TimeoutError)
    assert timed_out.value.aggregate_id == workflow.workflow_id
    reached = await orchestrator.wait(workflow.workflow_id, timeout=0, states=["INIT"])
    assert reached == workflow
    with pytest.raises(WorkflowNotFound):
        await orchestrator.wait(12345, timeout=DEADLINE)


async def test_wait_wakes_when_the_workflow_moves_on(
    settings: Settings, blocking_task: TaskFunction, gate: threading.Event
) -> None:
    registry = TaskRegistry()
    registry.register(State.EXECUTE, blocking_task, "hold")
    async with Orchestrator(settings=settings, registry=registry) as orchestrator:
        started = await orchestrator.start("held")
        at_execute = await orchestrator.wait(
            started.workflow_id, timeout=DEADLINE, states=[State.EXECUTE]
        )
        assert at_execute.state is State.EXECUTE
        with pytest.raises(WaitTimeout, match="it is EXECUTE, its EXECUTE step running"):
            await orchestrator.wait(started.workflow_id, timeout=0.05)

        gate.set()
        done = await orchestrator.wait(started.workflow_id, timeout=DEADLINE)

        assert done.state is State.COMPLETE
        assert done.task_results["EXECUTE"]["status"] == "released"


async def test_a_standalone_task_runs_and_can_be_waited_for(orchestrator: Orchestrator) -> None:
    parent = await orchestrator.start("parent", auto_start=False)
    task = await orchestrator.create_task(
        "crunch", "compute", config={"iterations": 100}, workflow_id=parent.workflow_id
    )
    assert task.status in (TaskStatus.PENDING, TaskStatus.RUNNING)
    assert await orchestrator.get_task(task.task_id) is not None

    done = await orchestrator.wait_task(task.task_id, timeout=DEADLINE)

    assert done.status is TaskStatus.COMPLETED
    assert done.result == {
        "status": "computed",
        "iterations": 100,
        "computation_result": sum(i * i for i in range(100)),
    }
    assert await orchestrator.get_task(task.task_id) == done
    assert await orchestrator.list_tasks(workflow_id=parent.workflow_id) == [done]
    assert await orchestrator.list_tasks(status="failed") == []
    assert (await orchestrator.stats()).tasks["COMPLETED"] == 1
    await orchestrator.delete_task(task.task_id)
    assert await orchestrator.get_task(task.task_id) is None
    with pytest.raises(InvalidTaskConfig, match="task_type must be one of"):
        await orchestrator.create_task("nope", "teleport")


async def test_a_long_task_can_time_out_its_wait_and_be_deleted(
    orchestrator: Orchestrator,
) -> None:
    task = await orchestrator.create_task("nap", "sleep", config={"duration": 30})

    with pytest.raises(WaitTimeout, match=f"task {task.task_id} did not reach COMPLETED"):
        await orchestrator.wait_task(task.task_id, timeout=0.05)
    await orchestrator.delete_task(task.task_id)  # cancels the sleep, freeing its thread

    assert await orchestrator.get_task(task.task_id) is None
    assert (await orchestrator.stats()).tasks == dict.fromkeys(
        ["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"], 0
    )


async def test_config_is_returned_as_the_log_stores_it(orchestrator: Orchestrator) -> None:
    workflow = await orchestrator.start("tuple", config={"pair": (1, 2)}, auto_start=False)

    assert workflow.config == {"pair": [1, 2]}
    assert (await orchestrator.events(workflow.workflow_id))[0].after == workflow
    with pytest.raises(TypeError, match="JSON values"):
        await orchestrator.start("bad", config={"when": object()})
    with pytest.raises(ValueError, match="name must be"):
        await orchestrator.start("")


async def test_it_refuses_use_outside_its_block_and_a_second_start(settings: Settings) -> None:
    orchestrator = Orchestrator(settings=settings)
    with pytest.raises(LifecycleError, match="not running: use it inside `async with"):
        await orchestrator.start("too early")

    async with orchestrator as running:
        assert running is orchestrator
        with pytest.raises(LifecycleError, match="already started"):
            await orchestrator.__aenter__()
        workflow = await orchestrator.start("inside")

    with pytest.raises(LifecycleError, match="has stopped"):
        await orchestrator.get(workflow.workflow_id)
    with pytest.raises(LifecycleError, match="already started"):
        async with orchestrator:
            pass


async def test_settings_come_from_the_url_and_keyword_overrides() -> None:
    orchestrator = Orchestrator("memory://", task_time_scale=0, max_workers=2)
    assert orchestrator.settings.database_url == "memory://"
    assert orchestrator.settings.max_workers == 2
    assert orchestrator.settings.task_time_scale == 0
    with pytest.raises(TypeError, match="unknown setting"):
        Orchestrator("memory://", max_wrokers=2)
    async with orchestrator:
        workflow = await orchestrator.start("in memory")
        done = await orchestrator.wait(workflow.workflow_id, timeout=DEADLINE)
        assert done.state is State.COMPLETE
        assert done.completed_at is not None and done.started_at is not None
        assert done.completed_at - done.started_at < timedelta(seconds=DEADLINE)


def _is_set(event: threading.Event) -> Callable[[], Awaitable[bool]]:
    """An async probe of a thread's signal, for `wait_for_async`."""

    async def probe() -> bool:
        return event.is_set()

    return probe
