"""Resume after a restart, on a SQLite file: a step or run in flight when one runtime stops runs
again in the next runtime on the same file, and its outcome is recorded exactly once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from orchestrator.domain.states import State
from orchestrator.domain.tasks import CreateTask, TaskStatus
from orchestrator.engine import task_types
from orchestrator.engine.executor import TaskCancelled, cancellation
from orchestrator.engine.task_types import TaskWork
from orchestrator.settings import Settings
from tests.engine.fake_tasks import BACKSTOP, Calls, registry_of, until_cancelled
from tests.engine.harness import (
    AUTOMATIC,
    FULL_LIFE,
    engine_settings,
    eventually,
    quiesce,
    running,
    task_lines,
    wait_until,
    workflow_lines,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def on_file(tmp_path: Path) -> Settings:
    """Settings for runtimes that share one SQLite file."""
    return engine_settings(f"sqlite:///{tmp_path / 'wf.db'}")


async def test_a_step_in_flight_at_stop_runs_again_at_the_next_start_and_is_recorded_once(
    on_file: Settings,
) -> None:
    before, after = Calls(), Calls()
    entered = threading.Event()
    interrupted = registry_of(before, PREPARE=until_cancelled(before, entered))

    async with running(on_file, interrupted) as first:
        await first.coordinator.start(AUTOMATIC)
        await wait_until(entered.is_set, what="the PREPARE step to run")
        assert first.coordinator.is_driving(1)
    # stopped with PREPARE started and no outcome recorded for it

    async with running(on_file, registry_of(after)) as second:
        await quiesce(second)
        lines = await workflow_lines(second, 1)
        workflow = await second.service.load(1, fresh=True)

    assert lines == ["WorkflowStarted", *FULL_LIFE]  # one StepStarted and one outcome per step
    assert before.states == [State.INIT, State.PREPARE]
    assert after.states == [State.PREPARE, State.EXECUTE, State.VALIDATE, State.COMPLETE]
    assert workflow is not None
    assert (workflow.state, workflow.finalized) == (State.COMPLETE, True)


async def test_a_finished_workflow_is_not_run_again_at_the_next_start(on_file: Settings) -> None:
    before, after = Calls(), Calls()
    async with running(on_file, registry_of(before)) as first:
        await first.coordinator.start(AUTOMATIC)
        await quiesce(first)

    async with running(on_file, registry_of(after)) as second:
        await quiesce(second)
        lines = await workflow_lines(second, 1)
        new = await second.coordinator.start(AUTOMATIC)
        await quiesce(second)

    assert lines == ["WorkflowStarted", *FULL_LIFE]
    assert after.count(State.INIT) == 1  # only the new workflow's
    assert new.workflow.workflow_id == 2  # ids go on from what the file holds


async def test_a_task_run_in_flight_at_stop_runs_again_and_is_recorded_once(
    on_file: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered = threading.Event()

    def interrupted(config: dict[str, Any]) -> TaskWork:
        def work() -> dict[str, Any]:
            entered.set()
            if not cancellation().wait(BACKSTOP):
                raise TimeoutError("nothing ever told this run to stop")
            raise TaskCancelled("the run was told to stop")

        return work

    def finishing(config: dict[str, Any]) -> TaskWork:
        return lambda: {"status": "finished"}

    monkeypatch.setitem(task_types.TASK_TYPES, "resumable", interrupted)
    async with running(on_file, registry_of(Calls())) as first:
        await first.tasks.create(CreateTask(task_id=0, name="long", task_type="resumable"))
        await eventually(
            lambda: task_lines(first, 1),
            lambda lines: "TaskRunPickedUp 1" in lines,
            what="the run to be picked up",
        )
        assert entered.is_set()

    monkeypatch.setitem(task_types.TASK_TYPES, "resumable", finishing)
    async with running(on_file, registry_of(Calls())) as second:
        await quiesce(second)
        lines = await task_lines(second, 1)
        task = await second.tasks.service.load(1, fresh=True)

    assert lines == ["TaskCreated", "TaskRunStarted 1", "TaskRunPickedUp 1", "TaskRunSucceeded"]
    assert task is not None
    assert (task.status, task.result, task.attempt) == (
        TaskStatus.COMPLETED,
        {"status": "finished"},
        1,
    )
