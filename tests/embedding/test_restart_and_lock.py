"""One SQLite file, one driver: a restart resumes what was in flight, and a second Orchestrator
or a server on the same file is refused while one runs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator import Orchestrator
from orchestrator.domain.events import StepStarted, StepSucceeded
from orchestrator.domain.states import State
from orchestrator.embedded import LifecycleError, StartRefused
from orchestrator.engine.tasks import TaskContext, TaskFunction, TaskRegistry
from orchestrator.serving import DatabaseLock, ServeRefused
from orchestrator.settings import Settings
from tests.waiting import wait_for_async

pytestmark = pytest.mark.anyio

#: How long any wait in these tests may take before it counts as a failure.
DEADLINE = 5.0
FORWARD = [State.INIT, State.PREPARE, State.EXECUTE, State.VALIDATE, State.COMPLETE]


def _is_set(event: threading.Event) -> Callable[[], Awaitable[bool]]:
    """An async probe of a thread's signal, for `wait_for_async`."""

    async def probe() -> bool:
        return event.is_set()

    return probe


async def test_a_new_orchestrator_on_the_file_finishes_a_step_left_in_flight(
    settings: Settings, blocking_task: TaskFunction, entered: threading.Event
) -> None:
    holding = TaskRegistry()
    holding.register(State.EXECUTE, blocking_task, "hold")
    async with Orchestrator(settings=settings, registry=holding) as first:
        started = await first.start("survivor", config={"iterations": 4})
        await wait_for_async(_is_set(entered), bool, what="the EXECUTE step to run")
        in_flight = await first.wait(started.workflow_id, DEADLINE, states=["EXECUTE"])
        assert in_flight.step is State.EXECUTE
    # The block ended with the step still running (no grace): it stays recorded as started.

    # The same task name, now one that returns at once (a resumed step runs the task it began).
    releasing = TaskRegistry()
    releasing.register(State.EXECUTE, _resumed, "hold")
    async with Orchestrator(settings=settings, registry=releasing) as second:
        done = await second.wait(started.workflow_id, timeout=DEADLINE)
        history = await second.events(started.workflow_id)

    assert done.state is State.COMPLETE and done.finalized
    assert done.task_results["EXECUTE"] == {"status": "resumed", "iterations": 4}
    succeeded = [item.event.state for item in history if isinstance(item.event, StepSucceeded)]
    assert succeeded == FORWARD  # exactly one outcome per state
    begun = [item.event.state for item in history if isinstance(item.event, StepStarted)]
    assert begun == FORWARD  # resumed, not begun a second time
    assert history[-1].after == done


def _resumed(context: TaskContext) -> dict[str, Any]:
    return {"status": "resumed", "iterations": context.config["iterations"]}


async def test_leaving_the_block_gives_running_steps_the_shutdown_grace(
    settings: Settings, blocking_task: TaskFunction, entered: threading.Event, gate: threading.Event
) -> None:
    holding = TaskRegistry()
    holding.register(State.EXECUTE, blocking_task, "hold")
    graceful = dataclasses.replace(settings, shutdown_grace_seconds=DEADLINE)
    async with Orchestrator(settings=graceful, registry=holding) as first:
        started = await first.start("graceful")
        await wait_for_async(_is_set(entered), bool, what="the EXECUTE step to run")

        waiting = asyncio.Event()

        async def release_once_stopping() -> None:
            # A wait in progress ends when the Orchestrator begins to stop; only then is the
            # step let go, so it finishes inside the grace, not before the block ends.
            with pytest.raises(LifecycleError, match="stopped while waiting for workflow"):
                waiting.set()
                await first.wait(started.workflow_id, timeout=DEADLINE)
            gate.set()

        releaser = asyncio.create_task(release_once_stopping())
        await waiting.wait()
    await releaser

    async with Orchestrator(settings=settings, registry=holding) as second:
        done = await second.wait(started.workflow_id, timeout=DEADLINE)
        history = await second.events(started.workflow_id)

    # The first recorded the step's outcome (and began VALIDATE in the same append); the
    # second ran what was left, once.
    assert done.state is State.COMPLETE
    assert done.task_results["EXECUTE"] == {"status": "released", "state": "EXECUTE"}
    succeeded = [item.event.state for item in history if isinstance(item.event, StepSucceeded)]
    assert succeeded == FORWARD


async def test_a_second_orchestrator_on_the_same_file_is_refused(settings: Settings) -> None:
    async with Orchestrator(settings=settings) as first:
        workflow = await first.start("mine", auto_start=False)
        second = Orchestrator(settings=settings)
        with pytest.raises(StartRefused, match="already serving") as refused:
            await second.__aenter__()
        assert refused.value.database == settings.database.path
        # The refused one started nothing and took nothing from the first.
        assert (await first.next(workflow.workflow_id)).state is State.PREPARE

    async with Orchestrator(settings=settings) as after:  # the lock went with the first
        again = await after.get(workflow.workflow_id)
        assert again is not None and again.state is State.PREPARE


async def test_a_server_and_an_orchestrator_cannot_share_a_file(settings: Settings) -> None:
    path = Path(str(settings.database.path))
    server_lock = DatabaseLock(path)  # what `orchestrator serve` holds while it runs
    server_lock.acquire()
    try:
        with pytest.raises(StartRefused, match="another orchestrator server"):
            async with Orchestrator(settings=settings):
                pass
    finally:
        server_lock.release()

    async with Orchestrator(settings=settings):
        with pytest.raises(ServeRefused, match="already serving"):
            DatabaseLock(path).acquire()  # `serve` would stop here, saying so


async def test_memory_orchestrators_share_nothing_and_need_no_lock() -> None:
    async with (
        Orchestrator("memory://", task_time_scale=0) as one,
        Orchestrator("memory://", task_time_scale=0) as two,
    ):
        first = await one.start("a", auto_start=False)
        assert await two.get(first.workflow_id) is None


async def test_a_deleted_database_with_its_log_left_is_refused(
    settings: Settings, tmp_path: Path
) -> None:
    path = Path(str(settings.database.path))
    Path(f"{path}-wal").write_bytes(b"not empty")

    with pytest.raises(StartRefused, match="write-ahead log"):
        async with Orchestrator(settings=settings):
            pass

    Path(f"{path}-wal").unlink()
    async with Orchestrator(settings=settings) as orchestrator:  # nothing was left locked
        assert await orchestrator.list() == []


async def test_the_original_orchestrators_database_is_refused_untouched(
    settings: Settings,
) -> None:
    path = Path(str(settings.database.path))
    with contextlib.closing(sqlite3.connect(path)) as original:
        for table in ("workflows", "workflow_transitions", "tasks"):
            original.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
        original.commit()
    before = path.read_bytes()

    with pytest.raises(StartRefused, match="import-original") as refused:
        async with Orchestrator(settings=settings):
            pass

    assert refused.value.database == str(path)
    assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists()
    lock = DatabaseLock(path)
    lock.acquire()  # nothing was left locked
    lock.release()
