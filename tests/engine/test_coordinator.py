"""The coordinator driving workflows by itself: every step recorded exactly once, failures and
timeouts recorded with their error, retry going on, and cancel discarding a late result."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from orchestrator.domain.errors import InvalidTransition
from orchestrator.domain.events import StepFailed, StepSucceeded
from orchestrator.domain.states import State
from orchestrator.domain.workflow import Workflow
from orchestrator.engine.tasks import TaskContext, TaskRegistry
from orchestrator.runtime import Runtime
from tests.engine.fake_tasks import (
    TASK_STATES,
    Calls,
    Gate,
    failing,
    registry_of,
    result_of,
    task_name,
    until_cancelled,
)
from tests.engine.harness import (
    AUTOMATIC,
    FULL_LIFE,
    MANUAL,
    engine_settings,
    lifecycle,
    only,
    quiesce,
    running,
    wait_until,
    workflow_events,
    workflow_lines,
)

pytestmark = pytest.mark.anyio


async def latest(runtime: Runtime, workflow_id: int) -> Workflow:
    """The workflow folded from its stream."""
    workflow = await runtime.service.load(workflow_id, fresh=True)
    assert workflow is not None
    return workflow


async def test_an_automatic_workflow_runs_each_step_once_and_reaches_complete(
    runtime: Runtime, calls: Calls
) -> None:
    await runtime.coordinator.start(AUTOMATIC)
    await quiesce(runtime)

    assert await workflow_lines(runtime, 1) == ["WorkflowStarted", *FULL_LIFE]
    assert calls.states == list(TASK_STATES)
    succeeded = only(await workflow_events(runtime, 1), StepSucceeded)
    assert [(event.state, event.result) for event in succeeded] == [
        (state, result_of(state)) for state in TASK_STATES
    ]
    workflow = await latest(runtime, 1)
    assert (workflow.state, workflow.finalized, workflow.step) == (State.COMPLETE, True, None)
    assert workflow.completed_at is not None
    assert workflow.task_names == {state.value: task_name(state) for state in TASK_STATES}


async def test_the_read_models_follow_what_the_coordinator_recorded(runtime: Runtime) -> None:
    await runtime.coordinator.start(AUTOMATIC)
    await quiesce(runtime)

    await runtime.projector.wait_for(await runtime.store.head_position())

    projected = await runtime.projector.workflow(1)
    assert projected == await latest(runtime, 1)
    assert runtime.projector.stats()["COMPLETE"] == 1


async def test_workflows_started_together_each_record_each_step_once(
    runtime: Runtime, calls: Calls
) -> None:
    for _ in range(8):
        await runtime.coordinator.start(AUTOMATIC)
    await quiesce(runtime)

    for workflow_id in range(1, 9):
        assert await workflow_lines(runtime, workflow_id) == ["WorkflowStarted", *FULL_LIFE]
    assert [calls.count(state) for state in TASK_STATES] == [8] * len(TASK_STATES)


async def test_a_failing_step_makes_the_workflow_failed_with_its_error(
    runtime: Runtime, registry: TaskRegistry, calls: Calls
) -> None:
    registry.register(State.PREPARE, failing(calls, "disk full"), name="fake-prepare")

    await runtime.coordinator.start(AUTOMATIC)
    await quiesce(runtime)

    assert await workflow_lines(runtime, 1) == [
        "WorkflowStarted",
        *lifecycle(State.INIT),
        "StepStarted PREPARE",
        "StepFailed PREPARE",
        "WorkflowTransitioned PREPARE->FAILED",
    ]
    [failed] = only(await workflow_events(runtime, 1), StepFailed)
    assert (failed.error, failed.timed_out) == ("TaskFailure: disk full", False)
    workflow = await latest(runtime, 1)
    assert (workflow.state, workflow.error_message) == (State.FAILED, "TaskFailure: disk full")
    assert workflow.transitions[-1].reason == "TaskFailure: disk full"
    assert calls.states == [State.INIT, State.PREPARE]


async def test_retry_after_a_failure_runs_the_workflow_again_to_complete(
    runtime: Runtime, registry: TaskRegistry, calls: Calls
) -> None:
    registry.register(State.INIT, failing(calls, "not yet", attempts=1), name="fake-init")
    await runtime.coordinator.start(AUTOMATIC)
    await quiesce(runtime)
    assert (await latest(runtime, 1)).state is State.FAILED

    retried = await runtime.coordinator.retry(1)
    await quiesce(runtime)

    assert (retried.workflow.state, retried.workflow.retries) == (State.INIT, 1)
    assert await workflow_lines(runtime, 1) == [
        "WorkflowStarted",
        "StepStarted INIT",
        "StepFailed INIT",
        "WorkflowTransitioned INIT->FAILED",
        "WorkflowTransitioned FAILED->INIT",
        *FULL_LIFE,
    ]
    workflow = await latest(runtime, 1)
    assert (workflow.state, workflow.retries, workflow.error_message) == (State.COMPLETE, 1, None)
    assert workflow.task_results["INIT"] == result_of(State.INIT, retries=1)
    assert calls.states == [State.INIT, *TASK_STATES]


async def test_cancel_during_a_running_step_discards_its_late_result(
    runtime: Runtime, registry: TaskRegistry, calls: Calls, gate: Gate
) -> None:
    registry.register(State.PREPARE, gate.held(calls), name="fake-prepare")
    await runtime.coordinator.start(AUTOMATIC)
    await wait_until(gate.entered.is_set, what="the PREPARE step to run")

    cancelled = await runtime.coordinator.cancel(1)
    gate.release()
    await quiesce(runtime)

    assert (cancelled.workflow.state, cancelled.workflow.step) == (State.CANCELLED, None)
    assert await workflow_lines(runtime, 1) == [
        "WorkflowStarted",
        *lifecycle(State.INIT),
        "StepStarted PREPARE",
        "WorkflowTransitioned PREPARE->CANCELLED",
    ]
    assert calls.cancelled_at_return == [True]  # the task was told to stop
    assert calls.states == [State.INIT, State.PREPARE]
    workflow = await latest(runtime, 1)
    assert (workflow.state, workflow.version) == (State.CANCELLED, cancelled.workflow.version)
    assert "PREPARE" not in workflow.task_results


async def test_a_task_that_watches_its_signal_stops_at_cancel_and_frees_its_thread(
    runtime: Runtime, registry: TaskRegistry, calls: Calls, gate: Gate
) -> None:
    registry.register(State.INIT, until_cancelled(calls, gate.entered), name="fake-init")
    await runtime.coordinator.start(AUTOMATIC)
    await wait_until(gate.entered.is_set, what="the INIT step to run")

    await runtime.coordinator.cancel(1)
    await quiesce(runtime)

    await wait_until(lambda: runtime.pool.active_tasks == 0, what="the step's thread to be free")
    assert await workflow_lines(runtime, 1) == [
        "WorkflowStarted",
        "StepStarted INIT",
        "WorkflowTransitioned INIT->CANCELLED",
    ]


async def test_a_next_whose_step_is_cancelled_meanwhile_is_refused_as_discarded(
    runtime: Runtime, registry: TaskRegistry, calls: Calls, gate: Gate
) -> None:
    registry.register(State.INIT, gate.held(calls), name="fake-init")
    await runtime.coordinator.start(MANUAL)
    advancing = asyncio.ensure_future(runtime.coordinator.advance(1))
    await wait_until(gate.entered.is_set, what="the INIT step to run")

    await runtime.coordinator.cancel(1)
    gate.release()

    with pytest.raises(InvalidTransition) as refused:
        await advancing
    assert (refused.value.state, refused.value.action) == ("CANCELLED", "next")
    assert "result was discarded" in str(refused.value)
    assert await workflow_lines(runtime, 1) == [
        "WorkflowStarted",
        "StepStarted INIT",
        "WorkflowTransitioned INIT->CANCELLED",
    ]


async def test_a_step_past_the_task_timeout_fails_as_timed_out(calls: Calls, gate: Gate) -> None:
    registry = registry_of(calls, INIT=until_cancelled(calls, gate.entered))

    async with running(engine_settings(task_timeout=0.05), registry) as runtime:
        await runtime.coordinator.start(AUTOMATIC)
        await quiesce(runtime)
        await wait_until(
            lambda: runtime.pool.active_tasks == 0, what="the step's thread to be free"
        )
        lines = await workflow_lines(runtime, 1)
        [failed] = only(await workflow_events(runtime, 1), StepFailed)

    assert lines == [
        "WorkflowStarted",
        "StepStarted INIT",
        "StepFailed INIT",
        "WorkflowTransitioned INIT->FAILED",
    ]
    assert (failed.error, failed.timed_out) == ("INIT step timed out after 0.05 s", True)
    assert calls.states == [State.INIT]


def returns_a_list(context: TaskContext) -> dict[str, Any]:
    """A task that breaks its contract: its result is no dict."""
    return cast(dict[str, Any], [str(context.state)])


def exits(context: TaskContext) -> dict[str, Any]:
    """A task that asks the whole process to exit."""
    raise SystemExit(3)


@pytest.mark.parametrize(
    ("function", "error"),
    [
        (returns_a_list, "TypeError: task returned list, expected a dict"),
        (exits, "TaskAborted: the task raised SystemExit: 3"),
    ],
    ids=["result-not-a-dict", "system-exit"],
)
async def test_a_task_that_breaks_its_contract_fails_its_step_and_the_engine_goes_on(
    runtime: Runtime, registry: TaskRegistry, function: Any, error: str
) -> None:
    registry.register(State.EXECUTE, function, name="fake-execute")
    await runtime.coordinator.start(AUTOMATIC)
    await quiesce(runtime)

    [failed] = only(await workflow_events(runtime, 1), StepFailed)
    assert (failed.state, failed.error) == (State.EXECUTE, error)
    assert (await latest(runtime, 1)).state is State.FAILED
    await runtime.coordinator.start(MANUAL)  # the engine still takes commands
    assert (await runtime.coordinator.advance(2)).workflow.state is State.PREPARE
