"""GET /execution/activity's counter on every backend: it reads the log by event type and finds
the window's start by a binary search on `recorded_at`, both of which each store must support."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.domain.commands import StartWorkflow
from orchestrator.http.activity import ActivityCounts
from orchestrator.runtime import Runtime, build_runtime
from orchestrator.settings import Settings
from tests.contract.conftest import postgres_url

pytestmark = pytest.mark.anyio


class Clock:
    """A clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def runtime(backend: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    """A started runtime on each backend with instant tasks."""
    if backend == "postgres":
        url = postgres_url(tmp_path)
    else:
        url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'log.db'}"
    running = build_runtime(Settings(database_url=url, task_time_scale=0, log_file=""))
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def test_started_and_finished_workflows_are_counted_over_several_calls(
    runtime: Runtime,
) -> None:
    for i in range(3):
        await runtime.coordinator.start(StartWorkflow(workflow_id=0, name=f"auto-{i}"))
    await runtime.coordinator.start(
        StartWorkflow(workflow_id=0, name="fails", config={"simulate_failure": True})
    )
    await runtime.coordinator.start(StartWorkflow(workflow_id=0, name="waits", auto_start=False))
    await runtime.coordinator.wait_idle()
    head = await runtime.store.head_position()
    clock = Clock()
    # 5 started and 13 transitioned events count; 5 at a time takes four calls.
    counts = ActivityCounts(runtime.store, clock=clock, budget=5)

    answers = [await counts.read(60) for _ in range(4)]

    assert [a.complete for a in answers] == [False, False, False, True]
    assert answers[-1].position == head
    assert sum(m.started for m in answers[-1].minutes) == 5
    assert sum(m.finished for m in answers[-1].minutes) == 4  # 3 COMPLETE and 1 FAILED
    assert sum(m.started + m.finished for m in answers[-1].minutes[:-2]) == 0  # all just now

    clock.now += timedelta(minutes=61)
    assert sum(m.started + m.finished for m in (await counts.read(60)).minutes) == 0
    fresh = ActivityCounts(runtime.store, clock=clock)  # as a new process would, an hour on
    later = await fresh.read(60)
    assert later.complete and later.position == head
    assert sum(m.started + m.finished for m in later.minutes) == 0
