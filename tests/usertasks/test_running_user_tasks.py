"""User tasks run by the engine (no HTTP): sync and async steps, their config, attempts with
back-off, timeouts, progress, standalone task types, and what a restart with changed task code
does to a step in flight."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from orchestrator.domain.commands import StartWorkflow
from orchestrator.domain.events import StepAttemptFailed, StepFailed, StepProgressed
from orchestrator.domain.states import State
from orchestrator.domain.tasks import CreateTask, TaskStatus
from orchestrator.runtime import Runtime
from orchestrator.tasks import NoRetry, TaskContext, TaskRegistry, load_task_modules
from tests.engine.harness import (
    engine_settings,
    eventually,
    quiesce,
    running,
    workflow_events,
    workflow_lines,
)
from tests.usertasks import sample_tasks

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def fresh_notes() -> Iterator[None]:
    sample_tasks.SEEN.clear()
    yield
    sample_tasks.SEEN.clear()


@pytest.fixture
async def runtime() -> AsyncIterator[Runtime]:
    """A runtime running the sample module's tasks."""
    async with running(
        engine_settings(), load_task_modules(["tests.usertasks.sample_tasks"])
    ) as up:
        yield up


async def start(runtime: Runtime, config: dict[str, Any] | None = None) -> int:
    outcome = await runtime.coordinator.start(
        StartWorkflow(workflow_id=0, name="user", config=config or {})
    )
    return outcome.workflow.workflow_id


async def test_a_workflow_runs_the_users_sync_and_async_steps_with_their_config(
    runtime: Runtime,
) -> None:
    workflow_id = await start(runtime, {"size": 5})
    await quiesce(runtime)

    workflow = await runtime.service.load(workflow_id, fresh=True)
    assert workflow is not None
    assert workflow.state is State.COMPLETE
    assert workflow.task_results["EXECUTE"] == {"total": 10, "attempt": 1}
    assert workflow.task_results["VALIDATE"] == {"checked": True, "workflow": workflow_id}
    assert workflow.task_names["EXECUTE"] == "crunch"
    assert sample_tasks.SEEN[0] == ("crunch", 1, sample_tasks.Crunch(size=5))
    assert sample_tasks.SEEN[1][0] == "check"


async def test_a_failed_attempt_is_recorded_and_the_step_runs_again(runtime: Runtime) -> None:
    workflow_id = await start(runtime, {"size": 13})  # crunch fails its first attempt on 13
    await quiesce(runtime)

    events = await workflow_events(runtime, workflow_id)
    attempts = [e for e in events if isinstance(e, StepAttemptFailed)]
    assert [(a.state, a.attempt, a.error) for a in attempts] == [
        (State.EXECUTE, 1, "ValueError: unlucky size")
    ]
    workflow = await runtime.service.load(workflow_id, fresh=True)
    assert workflow is not None
    assert workflow.state is State.COMPLETE
    assert workflow.task_results["EXECUTE"] == {"total": 78, "attempt": 2}
    assert [call[1] for call in sample_tasks.SEEN if call[0] == "crunch"] == [1, 2]


async def test_a_config_the_step_cannot_take_is_refused_before_anything_is_recorded(
    runtime: Runtime,
) -> None:
    with pytest.raises(Exception, match=r"at `\$.config.size`"):
        await start(runtime, {"size": "big"})

    assert await runtime.store.head_position() == 0


def registry_with(state: State, function: Any, **options: Any) -> TaskRegistry:
    registry = TaskRegistry()
    registry.register(state, function, **options)
    return registry


async def test_retries_run_out_and_the_step_fails_with_the_last_error() -> None:
    calls: list[int] = []

    def always(ctx: TaskContext) -> dict[str, Any]:
        calls.append(ctx.attempt)
        raise RuntimeError(f"attempt {ctx.attempt} broke")

    registry = registry_with(State.PREPARE, always, name="flaky", retries=2, backoff=0.05)
    async with running(engine_settings(), registry) as runtime:
        workflow_id = await start(runtime)
        await quiesce(runtime)
        events = await workflow_events(runtime, workflow_id)
        workflow = await runtime.service.load(workflow_id, fresh=True)

    assert calls == [1, 2, 3]
    failed = [e for e in events if isinstance(e, StepAttemptFailed)]
    assert [(e.attempt, e.retry_in) for e in failed] == [(1, 0.05), (2, 0.1)]
    # The back-off is kept between attempts: each retry starts after its failure's retry_in.
    final = next(e for e in events if isinstance(e, StepFailed))
    assert (final.at - failed[1].at).total_seconds() >= 0.1
    assert (failed[1].at - failed[0].at).total_seconds() >= 0.05
    assert final.error == "RuntimeError: attempt 3 broke"
    assert workflow is not None
    assert (workflow.state, workflow.error_message) == (
        State.FAILED,
        "RuntimeError: attempt 3 broke",
    )


async def test_an_async_step_past_its_own_timeout_fails_as_timed_out() -> None:
    async def slow(ctx: TaskContext) -> dict[str, Any]:
        await asyncio.sleep(30)
        return {}

    registry = registry_with(State.INIT, slow, name="slow", timeout=0.05)
    async with running(engine_settings(), registry) as runtime:
        workflow_id = await start(runtime)
        await quiesce(runtime)
        events = await workflow_events(runtime, workflow_id)

    failed = next(e for e in events if isinstance(e, StepFailed))
    assert (failed.state, failed.timed_out) == (State.INIT, True)
    assert failed.error == "INIT step timed out after 0.05 s"


async def test_a_result_that_is_not_json_fails_the_step_saying_why() -> None:
    registry = registry_with(State.INIT, lambda ctx: {"when": object()}, name="odd")
    async with running(engine_settings(), registry) as runtime:
        workflow_id = await start(runtime)
        await quiesce(runtime)
        workflow = await runtime.service.load(workflow_id, fresh=True)

    assert workflow is not None
    assert workflow.state is State.FAILED
    assert workflow.error_message is not None
    assert workflow.error_message.startswith("TypeError: task returned a result that is not JSON")


async def test_progress_is_recorded_at_most_once_a_second_and_shown_while_the_step_runs() -> None:
    first_seen, release = threading.Event(), threading.Event()

    def reporting(ctx: TaskContext) -> dict[str, Any]:
        ctx.progress(0.1, "starting")
        first_seen.wait(10)
        for done in range(2, 101):  # a burst within the second: only the latest is recorded
            ctx.progress(done / 100, f"{done} of 100")
        release.wait(10)
        return {"reported": True}

    registry = registry_with(State.PREPARE, reporting, name="reporting")
    async with running(engine_settings(), registry) as runtime:
        workflow_id = await start(runtime)

        async def progress() -> Any:
            workflow = await runtime.service.load(workflow_id, fresh=True)
            return workflow.step_progress if workflow else None

        await eventually(progress, lambda p: p is not None, what="the first report")
        first_seen.set()
        shown = await eventually(
            progress, lambda p: p is not None and p.fraction == 1.0, what="the last report"
        )
        release.set()
        await quiesce(runtime)
        events = await workflow_events(runtime, workflow_id)
        after = await runtime.service.load(workflow_id, fresh=True)

    reports = [e for e in events if isinstance(e, StepProgressed)]
    assert [(r.fraction, r.note) for r in reports] == [(0.1, "starting"), (1.0, "100 of 100")]
    assert (reports[1].at - reports[0].at).total_seconds() >= 0.9
    assert shown.note == "100 of 100"
    assert after is not None
    assert after.step_progress is None  # cleared once the step is over


async def test_a_progress_outside_zero_to_one_is_the_tasks_error() -> None:
    registry = registry_with(State.INIT, lambda ctx: ctx.progress(1.5) or {}, name="overshoot")
    async with running(engine_settings(), registry) as runtime:
        workflow_id = await start(runtime)
        await quiesce(runtime)
        workflow = await runtime.service.load(workflow_id, fresh=True)

    assert workflow is not None
    assert workflow.error_message == "ValueError: progress is a number from 0 to 1, not 1.5"


async def test_a_standalone_task_of_a_user_type_runs_with_its_config(runtime: Runtime) -> None:
    created = await runtime.tasks.create(
        CreateTask(
            task_id=0,
            name="thumb",
            task_type="resize",
            config={"width": 3, "height": 4},
            max_retries=runtime.tasks.default_retries("resize"),
        )
    )
    await quiesce(runtime)

    task = await runtime.tasks.service.load(created.task.task_id, fresh=True)
    assert task is not None
    assert (task.status, task.result, task.max_retries) == (
        TaskStatus.COMPLETED,
        {"pixels": 12, "task": created.task.task_id},
        1,
    )
    assert "resize" in runtime.tasks.type_names()


# Changed task code under running workflows ----------------------------------------------------


async def start_and_stop_mid_step(path: Path, held: threading.Event) -> int:
    """Run a workflow until its PREPARE step (task 'hold') is in flight, then stop."""

    def hold(ctx: TaskContext) -> dict[str, Any]:
        held.set()
        ctx.cancelled.wait(10)
        return {"old": True}

    registry = registry_with(State.PREPARE, hold, name="hold")
    async with running(engine_settings(f"sqlite:///{path}"), registry) as first:
        workflow_id = await start(first)
        await eventually(lambda: asyncio.sleep(0, held.is_set()), bool, what="PREPARE to run")
    return workflow_id


async def test_a_step_in_flight_resumes_with_the_new_code_of_its_task(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    workflow_id = await start_and_stop_mid_step(path, threading.Event())

    new_code = registry_with(State.PREPARE, lambda ctx: {"new": True}, name="hold")
    async with running(engine_settings(f"sqlite:///{path}"), new_code) as second:
        await quiesce(second)
        workflow = await second.service.load(workflow_id, fresh=True)

    assert workflow is not None
    assert workflow.state is State.COMPLETE
    assert workflow.task_results["PREPARE"] == {"new": True}


async def test_a_step_whose_task_was_removed_fails_saying_so(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    workflow_id = await start_and_stop_mid_step(path, threading.Event())

    async with running(engine_settings(f"sqlite:///{path}"), TaskRegistry()) as second:
        await quiesce(second)
        workflow = await second.service.load(workflow_id, fresh=True)
        lines = await workflow_lines(second, workflow_id)

    assert workflow is not None
    assert workflow.state is State.FAILED
    assert workflow.error_message == (
        "the PREPARE step's task 'hold' is no longer loaded (this server runs 'prepare' in "
        "PREPARE); retry the workflow to run that"
    )
    assert lines[-2:] == ["StepFailed PREPARE", "WorkflowTransitioned PREPARE->FAILED"]


class Batch(msgspec.Struct):
    size: int


async def test_a_config_struct_added_to_a_running_step_fails_that_step_clearly(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.db"
    workflow_id = await start_and_stop_mid_step(path, threading.Event())

    stricter = registry_with(State.PREPARE, lambda ctx: {}, name="hold", config_type=Batch)
    async with running(engine_settings(f"sqlite:///{path}"), stricter) as second:
        await quiesce(second)
        workflow = await second.service.load(workflow_id, fresh=True)

    assert workflow is not None
    assert workflow.error_message == (
        "InvalidTaskConfig: config of task 'hold': Object missing required field `size` - at "
        "`$.config`"
    )


async def test_the_readmes_task_module_loads_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Writing tasks", 1)[1]
    source = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "readme_tasks.py").write_text(source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))

    registry = load_task_modules(["readme_tasks"])
    async with running(engine_settings(), registry) as runtime:
        workflow_id = await start(runtime, {"size": 300})
        await quiesce(runtime)
        workflow = await runtime.service.load(workflow_id, fresh=True)
        task = await runtime.tasks.create(CreateTask(task_id=0, name="r", task_type="resize"))
        await quiesce(runtime)
        resized = await runtime.tasks.service.load(task.task.task_id, fresh=True)

    assert workflow is not None
    assert workflow.state is State.COMPLETE
    assert workflow.task_results["EXECUTE"] == {"total": sum(i * i for i in range(300))}
    assert workflow.task_results["VALIDATE"] == {"ok": True}
    assert resized is not None
    assert resized.result == {"done": task.task.task_id}


async def test_a_step_reads_the_results_of_the_steps_before_it() -> None:
    seen: list[dict[str, Any]] = []

    def validate(ctx: TaskContext) -> dict[str, Any]:
        seen.append({state: dict(result) for state, result in ctx.results.items()})
        return {"checked": ctx.results["EXECUTE"]["computation_result"]}

    registry = registry_with(State.VALIDATE, validate, name="validate_total")
    async with running(engine_settings(), registry) as runtime:
        workflow_id = await start(runtime, {"iterations": 4})
        await quiesce(runtime)
        workflow = await runtime.service.load(workflow_id, fresh=True)

    assert sorted(seen[0]) == ["EXECUTE", "INIT", "PREPARE"]
    assert workflow is not None
    assert workflow.task_results["VALIDATE"] == {"checked": 0 + 1 + 4 + 9}


async def test_no_retry_fails_the_step_at_once_whatever_its_retries() -> None:
    calls: list[int] = []

    def missing(ctx: TaskContext) -> dict[str, Any]:
        calls.append(ctx.attempt)
        raise NotThere("the document is gone (404)")

    registry = registry_with(State.PREPARE, missing, name="fetch", retries=3, backoff=0)
    async with running(engine_settings(), registry) as runtime:
        workflow_id = await start(runtime)
        await quiesce(runtime)
        workflow = await runtime.service.load(workflow_id, fresh=True)
        events = await workflow_events(runtime, workflow_id)

    assert calls == [1]
    assert not [e for e in events if isinstance(e, StepAttemptFailed)]
    assert workflow is not None
    assert (workflow.state, workflow.error_message) == (
        State.FAILED,
        "NotThere: the document is gone (404)",
    )


class NotThere(NoRetry):
    """A failure another attempt cannot mend."""


async def test_no_retry_ends_a_standalone_tasks_runs_too(module_folder_tasks: Path) -> None:
    registry = load_task_modules(["usermod_gone"])
    async with running(engine_settings(), registry) as runtime:
        created = await runtime.tasks.create(
            CreateTask(task_id=0, name="g", task_type="gone", max_retries=3)
        )
        await quiesce(runtime)
        task = await runtime.tasks.service.load(created.task.task_id, fresh=True)

    assert task is not None
    assert (task.status, task.attempt, task.error) == (
        TaskStatus.FAILED,
        1,
        "NoRetry: never coming back",
    )


@pytest.fixture
def module_folder_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "usermod_gone.py").write_text(
        "from orchestrator.tasks import NoRetry, task_type\n"
        "@task_type('gone')\ndef gone(ctx):\n    raise NoRetry('never coming back')\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("usermod_gone", None)


async def test_an_async_step_reports_progress_reads_results_and_can_refuse_retries() -> None:
    attempts: list[int] = []

    async def fetch(ctx: TaskContext) -> dict[str, Any]:
        attempts.append(ctx.attempt)
        ctx.progress(0.5, "half")
        await asyncio.sleep(0)
        if ctx.config.get("gone"):
            raise NotThere("404")
        return {"prepared_by": ctx.results["INIT"]["status"]}

    registry = registry_with(State.PREPARE, fetch, name="fetch", retries=2, backoff=0)
    async with running(engine_settings(), registry) as runtime:
        ok = await start(runtime)
        gone = await start(runtime, {"gone": True})
        await quiesce(runtime)
        finished = await runtime.service.load(ok, fresh=True)
        failed = await runtime.service.load(gone, fresh=True)

    assert finished is not None and failed is not None
    assert finished.task_results["PREPARE"] == {"prepared_by": "initialized"}
    assert (failed.state, failed.error_message) == (State.FAILED, "NotThere: 404")
    assert sorted(attempts) == [1, 1]  # NoRetry: no second attempt, retries or not


async def test_an_async_step_that_raises_system_exit_fails_without_stopping_the_engine() -> None:
    async def leaves(ctx: TaskContext) -> dict[str, Any]:
        raise SystemExit(3)

    registry = registry_with(State.INIT, leaves, name="leaves")
    async with running(engine_settings(), registry) as runtime:
        first = await start(runtime)
        await quiesce(runtime)
        registry.register(State.INIT, lambda ctx: {"fine": True}, "fine")
        second = await start(runtime)
        await quiesce(runtime)
        failed = await runtime.service.load(first, fresh=True)
        completed = await runtime.service.load(second, fresh=True)

    assert failed is not None and completed is not None
    assert failed.state is State.FAILED
    assert failed.error_message == "TaskAborted: the task raised SystemExit: 3"
    assert completed.state is State.COMPLETE


async def test_cancelling_a_workflow_stops_its_async_step() -> None:
    entered, stopped = asyncio.Event(), asyncio.Event()

    async def waits(ctx: TaskContext) -> dict[str, Any]:
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.set()
            raise
        return {}

    registry = registry_with(State.PREPARE, waits, name="waits")
    async with running(engine_settings(), registry) as runtime:
        workflow_id = await start(runtime)
        await asyncio.wait_for(entered.wait(), 5)
        await runtime.coordinator.cancel(workflow_id)
        await asyncio.wait_for(stopped.wait(), 5)
        await quiesce(runtime)
        workflow = await runtime.service.load(workflow_id, fresh=True)

    assert workflow is not None
    assert workflow.state is State.CANCELLED
    assert "PREPARE" not in workflow.task_results


async def test_a_result_over_the_limit_fails_the_step_saying_so() -> None:
    registry = registry_with(State.INIT, lambda ctx: {"blob": "x" * (1024 * 1024)}, name="big")
    async with running(engine_settings(), registry) as runtime:
        workflow_id = await start(runtime)
        await quiesce(runtime)
        workflow = await runtime.service.load(workflow_id, fresh=True)

    assert workflow is not None
    assert workflow.state is State.FAILED
    assert workflow.error_message == (
        "ValueError: task returned a result of 1,048,587 bytes as JSON, over the limit of "
        "1,048,576: keep large data elsewhere (a file, a store) and return where it is"
    )


async def test_a_task_changing_what_it_was_given_changes_nothing_recorded() -> None:
    def meddles(ctx: TaskContext) -> dict[str, Any]:
        ctx.config["nested"]["x"] = "changed"
        ctx.config["added"] = True
        ctx.results["INIT"]["status"] = "changed"  # type: ignore[index]
        return {"seen": ctx.config["nested"]["x"]}

    registry = registry_with(State.PREPARE, meddles, name="meddles")
    async with running(engine_settings(), registry) as runtime:
        workflow_id = await start(runtime, {"nested": {"x": "original"}})
        await quiesce(runtime)
        remembered = await runtime.service.load(workflow_id)
        folded = await runtime.service.load(workflow_id, fresh=True)

    for workflow in (remembered, folded):
        assert workflow is not None
        assert workflow.config == {"nested": {"x": "original"}}
        assert workflow.task_results["INIT"]["status"] == "initialized"
        assert workflow.task_results["PREPARE"] == {"seen": "changed"}
