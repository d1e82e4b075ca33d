"""The worker pools under the engine: one thread each and a queue bound of one, so a test fills
them with held work, sees the next command refused before anything is recorded, and sees a
draining pool finish what runs while leaving what is queued for the next start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrator.domain.states import State
from orchestrator.domain.tasks import CreateTask, TaskStatus
from orchestrator.engine import task_types
from orchestrator.engine.backlog import TooBusy
from orchestrator.engine.task_types import TaskWork
from orchestrator.engine.tasks import TaskRegistry
from orchestrator.runtime import Runtime
from orchestrator.settings import Settings
from tests.engine.fake_tasks import Calls, Gate, registry_of
from tests.engine.harness import (
    AUTOMATIC,
    FULL_LIFE,
    MANUAL,
    engine_settings,
    lifecycle,
    quiesce,
    running,
    task_lines,
    wait_until,
    workflow_lines,
)

pytestmark = pytest.mark.anyio

#: One thread per pool and at most one step or run waiting for it.
NARROW: dict[str, Any] = {
    "max_workers": 1,
    "task_workers": 1,
    "max_queued_steps": 1,
    "shutdown_grace_seconds": 1.0,
}


@pytest.fixture
def settings() -> Settings:
    """The narrow pools of this module, in memory."""
    return engine_settings(**NARROW)


async def fill_step_pool(runtime: Runtime, gate: Gate) -> None:
    """Start one automatic workflow whose INIT holds the only thread and one queued behind it."""
    await runtime.coordinator.start(AUTOMATIC)
    await wait_until(gate.entered.is_set, what="the first INIT step to hold the thread")
    await runtime.coordinator.start(AUTOMATIC)
    await wait_until(lambda: runtime.pool.queue_size == 1, what="the second step to be queued")


async def test_a_start_past_the_queue_bound_is_refused_and_records_nothing(
    runtime: Runtime, registry: TaskRegistry, calls: Calls, gate: Gate
) -> None:
    registry.register(State.INIT, gate.held(calls), name="fake-init")
    await fill_step_pool(runtime, gate)
    head = await runtime.store.head_position()

    with pytest.raises(TooBusy) as refused:
        await runtime.coordinator.start(AUTOMATIC)

    assert (refused.value.waiting, refused.value.limit) == (1, 1)
    assert "MAX_QUEUED_STEPS" in str(refused.value)
    assert (runtime.pool.active_tasks, runtime.pool.queue_size) == (1, 1)
    assert await runtime.store.head_position() == head
    assert await workflow_lines(runtime, 3) == []


async def test_commands_that_add_no_step_are_taken_while_the_pool_is_full(
    runtime: Runtime, registry: TaskRegistry, calls: Calls, gate: Gate
) -> None:
    registry.register(State.INIT, gate.held(calls), name="fake-init")
    await fill_step_pool(runtime, gate)

    manual = await runtime.coordinator.start(MANUAL)
    with pytest.raises(TooBusy):
        await runtime.coordinator.advance(manual.workflow.workflow_id)
    cancelled = await runtime.coordinator.cancel(manual.workflow.workflow_id)

    assert manual.workflow.workflow_id == 3
    assert cancelled.workflow.state is State.CANCELLED
    assert await workflow_lines(runtime, 3) == [
        "WorkflowStarted",
        "WorkflowTransitioned INIT->CANCELLED",
    ]


async def test_work_held_back_by_a_full_pool_runs_once_the_thread_is_free(
    runtime: Runtime, registry: TaskRegistry, calls: Calls, gate: Gate
) -> None:
    registry.register(State.INIT, gate.held(calls), name="fake-init")
    await fill_step_pool(runtime, gate)
    with pytest.raises(TooBusy):
        await runtime.coordinator.start(AUTOMATIC)

    gate.release()
    await quiesce(runtime)
    accepted = await runtime.coordinator.start(AUTOMATIC)
    await quiesce(runtime)

    assert accepted.workflow.workflow_id == 3  # the refused start took no id
    for workflow_id in (1, 2, 3):
        assert await workflow_lines(runtime, workflow_id) == ["WorkflowStarted", *FULL_LIFE]
    assert (runtime.pool.active_tasks, runtime.pool.queue_size) == (0, 0)


async def test_a_task_past_the_queue_bound_is_refused_and_records_nothing(
    runtime: Runtime, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    def held(config: dict[str, Any]) -> TaskWork:
        def work() -> dict[str, Any]:
            gate.pass_through()
            return {"status": "released"}

        return work

    monkeypatch.setitem(task_types.TASK_TYPES, "held", held)
    command = CreateTask(task_id=0, name="held", task_type="held")
    await runtime.tasks.create(command)
    await wait_until(gate.entered.is_set, what="the first run to hold the task thread")
    await runtime.tasks.create(command)
    await wait_until(lambda: runtime.task_pool.queue_size == 1, what="the second run to queue")
    head = await runtime.store.head_position()

    with pytest.raises(TooBusy, match="task runs are waiting") as refused:
        await runtime.tasks.create(command)

    assert (refused.value.waiting, refused.value.limit) == (1, 1)
    assert await runtime.store.head_position() == head
    assert runtime.pool.queue_size == 0  # the steps' pool is apart and empty
    gate.release()
    await quiesce(runtime)
    for task_id in (1, 2):
        task = await runtime.tasks.service.load(task_id, fresh=True)
        assert task is not None
        assert task.status is TaskStatus.COMPLETED
    assert await task_lines(runtime, 3) == []


async def test_a_draining_pool_records_the_running_step_and_leaves_the_queued_one_for_later(
    tmp_path: Path, calls: Calls, gate: Gate
) -> None:
    on_file = engine_settings(f"sqlite:///{tmp_path / 'wf.db'}", **NARROW)
    after = Calls()

    async with running(on_file, registry_of(calls, INIT=gate.held(calls))) as first:
        await fill_step_pool(first, gate)
        first.begin_shutdown()
        gate.release()
        await quiesce(first)
        running_one = await workflow_lines(first, 1)
        queued_one = await workflow_lines(first, 2)

    async with running(on_file, registry_of(after)) as second:
        await quiesce(second)
        resumed = [await workflow_lines(second, workflow_id) for workflow_id in (1, 2)]

    # The running step's outcome was recorded (with the next step begun in the same append) ...
    assert running_one == ["WorkflowStarted", *lifecycle(State.INIT), "StepStarted PREPARE"]
    # ... and the queued one was never begun: it stays started, to run at the next start.
    assert queued_one == ["WorkflowStarted", "StepStarted INIT"]
    assert calls.states == [State.INIT]
    assert resumed == [["WorkflowStarted", *FULL_LIFE]] * 2
    assert (after.count(State.INIT), after.count(State.PREPARE)) == (1, 2)
