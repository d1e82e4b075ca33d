"""Rebuild and `--check` on every backend's read-model tables, under a running runtime.

The runtime comes from the one factory (`build_runtime`), so the tables, store and projector are
wired as a server has them; the rebuild and the check are the CLI's own functions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.domain.commands import StartWorkflow
from orchestrator.domain.states import State
from orchestrator.eventstore.base import NewEvent
from orchestrator.projections import rebuild as rebuilding
from orchestrator.projections.models import Row
from orchestrator.projections.tables import LIVE, StoredRow, TablesSnapshot
from orchestrator.runtime import Runtime, build_runtime
from orchestrator.settings import Settings
from tests.contract.conftest import postgres_url

WORKFLOWS = 12

pytestmark = pytest.mark.anyio


@pytest.fixture
async def runtime(backend: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    """A started runtime on each backend, with WORKFLOWS automatic workflows run to the end."""
    if backend == "postgres":
        url = postgres_url(tmp_path)  # a schema of this test's own: `?schema=` in the URL
    else:
        url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'log.db'}"
    running = build_runtime(Settings(database_url=url, task_time_scale=0, log_file=""))
    await running.start()
    try:
        await run_workflows(running, WORKFLOWS)
        yield running
    finally:
        await running.stop()


async def run_workflows(runtime: Runtime, count: int) -> None:
    """Start `count` automatic workflows and wait until the read models show them finished."""
    await asyncio.gather(
        *(
            runtime.coordinator.start(StartWorkflow(workflow_id=0, name=f"w{i}"))
            for i in range(count)
        )
    )
    await runtime.coordinator.wait_idle()
    await runtime.projector.wait_for(await runtime.store.head_position())


async def rows_of(snapshot: TablesSnapshot) -> list[StoredRow]:
    return [row async for row in snapshot.rows()]


async def live_rows(runtime: Runtime) -> tuple[int, list[StoredRow], dict[str, int]]:
    """The live tables' checkpoint, rows and non-zero counters (a counter that went up and down
    again is 0, or absent after a rebuild: the same count)."""
    async with runtime.backend.tables.snapshot(LIVE) as live:
        counters = {name: count for name, count in (await live.counters()).items() if count}
        return live.checkpoint, await rows_of(live), counters


async def test_a_rebuild_swaps_in_the_same_read_models_and_the_server_keeps_projecting(
    runtime: Runtime,
) -> None:
    before = await live_rows(runtime)
    generation = await runtime.projections.load_generation()

    done = await rebuilding.rebuild(runtime.store, runtime.backend.tables, lambda line: None)

    assert done.done == await runtime.store.head_position()
    assert await live_rows(runtime) == before
    assert await runtime.projections.load_generation() == generation + 1
    # The running projector notices the swap and goes on saving into the new tables.
    await run_workflows(runtime, 3)
    _, rows, counters = await live_rows(runtime)
    assert len(rows) == WORKFLOWS + 3
    assert counters["workflow:COMPLETE"] == WORKFLOWS + 3
    assert {row.status for row in rows} == {State.COMPLETE.value}


async def test_a_check_of_untouched_read_models_finds_no_difference(runtime: Runtime) -> None:
    progress, differences = await rebuilding.check(
        runtime.store, runtime.backend.tables, lambda line: None
    )

    assert differences == []
    assert progress.done == await runtime.store.head_position()


async def test_a_check_names_a_row_and_a_counter_that_differ_from_the_log(runtime: Runtime) -> None:
    await runtime.projector.stop()  # nothing else writes the live tables from here on
    checkpoint, rows, _ = await live_rows(runtime)
    first = rows[0]
    forged = Row(first.kind, first.id, "FAILED", first.parent_id, first.deleted, False, b"{}")
    await runtime.projections.save([forged], {"workflow:FAILED": 1}, checkpoint, checkpoint)

    _, differences = await rebuilding.check(
        runtime.store, runtime.backend.tables, lambda line: None
    )

    assert [(d.table, d.key) for d in differences] == [
        ("rows", f"{first.kind} {first.id}"),
        ("counters", "workflow:FAILED"),
    ]
    assert differences[0].live == "FAILED {}"
    assert differences[1].live == "1"


async def test_a_swap_is_refused_while_the_log_has_moved_past_the_rebuild(
    runtime: Runtime,
) -> None:
    tables = runtime.backend.tables
    await tables.drop("rebuild_")
    scratch = tables.storage("rebuild_")
    await scratch.open()
    head = await runtime.store.head_position()
    _, rows, counters = await live_rows(runtime)
    generation = await runtime.projections.load_generation()
    await runtime.store.append("unrelated-1", 0, [NewEvent(type="Noted", data=b"{}")])
    try:
        assert await tables.swap_in("rebuild_", head) is False
        # The empty scratch tables were not swapped in: the live rows are all still there.
        assert (await live_rows(runtime))[1:] == (rows, counters)
        assert await runtime.projections.load_generation() == generation
    finally:
        await scratch.close()
        await tables.drop("rebuild_")
