"""`verify` and rebuilds in several processes (part_processes.py): when they are used, what
they report as they go, what they fill, and what a process that fails turns into.
(test_verify.py, test_anchors.py, test_rebuild.py and test_check_lagging.py run every finding
both ways through the CLI.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator import part_processes
from orchestrator.eventstore.memory import InMemoryEventStore
from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.history.verify import verify
from orchestrator.part_processes import (
    MAX_PROCESSES,
    PROCESSES_FROM,
    CheckJob,
    CheckReport,
    PartFailed,
    process_count,
    run_parts,
)
from orchestrator.projections.projector import Projector
from orchestrator.projections.sqlite_tables import SQLiteReadModelTables
from tests.history.conftest import RecordedRun

pytestmark = pytest.mark.anyio


def test_a_large_log_takes_one_process_a_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(part_processes, "usable_cores", lambda: 3)

    assert process_count(PROCESSES_FROM, None) == 3
    assert process_count(PROCESSES_FROM - 1, None) == 1  # one process is quicker
    assert process_count(10, 2) == 2  # asked for
    assert process_count(PROCESSES_FROM, 1) == 1
    assert process_count(10, 64) == MAX_PROCESSES
    monkeypatch.setattr(part_processes, "usable_cores", lambda: 1)
    assert process_count(10 * PROCESSES_FROM, None) == 1


async def test_a_log_that_is_not_in_a_file_is_checked_in_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(part_processes, "usable_cores", lambda: 4)
    store = InMemoryEventStore()

    report = await verify(store, processes=4)

    assert report.ok and report.processes == 1


async def test_the_parts_report_what_one_process_does_and_progress_reaches_the_head(
    recorded_run: RecordedRun, database: Path
) -> None:
    store = SQLiteEventStore(str(database))
    await store.open()
    try:
        alone = await verify(store, processes=1)
        seen: list[int] = []
        together = await verify(store, progress=seen.append, processes=3)
    finally:
        await store.close()

    assert alone.ok and together.ok
    assert (together.events, together.streams) == (alone.events, alone.streams)
    assert together.events == recorded_run.head
    assert (alone.processes, together.processes) == (1, 3)
    assert seen and seen[-1] == recorded_run.head and seen == sorted(seen)


async def test_a_part_that_fails_fails_the_whole_with_its_reason(tmp_path: Path) -> None:
    missing = tmp_path / "gone.db"
    jobs = [CheckJob(str(missing), part, 2, 10, [], 20) for part in range(2)]

    with pytest.raises(PartFailed) as failed:
        await run_parts(jobs, CheckReport, None, f"verify of {missing}")

    message = str(failed.value)
    assert message.startswith(f"verify of {missing}: the process of part ")
    assert " of 2 failed (exit 1): " in message
    assert "unable to open database file" in message


async def test_read_models_folded_by_parts_are_those_one_process_folds(
    recorded_run: RecordedRun, database: Path
) -> None:
    store = SQLiteEventStore(str(database))
    await store.open()
    tables = SQLiteReadModelTables(store)
    seen: list[int] = []
    try:
        for prefix, processes in (("one_", 1), ("three_", 3)):
            storage = tables.storage(prefix)
            await storage.open()
            filled = await tables.prefill(prefix, recorded_run.head, processes, seen.append)
            assert filled == (0 if processes == 1 else recorded_run.head)
            projector = Projector(store, storage, cache_size=10_000)
            await projector.start(follow=False)  # folds what the parts did not: all, or none
            assert projector.position == recorded_run.head
            await projector.stop()
            await storage.close()
        async with tables.snapshot("one_") as alone, tables.snapshot("three_") as parts:
            assert parts.checkpoint == alone.checkpoint == recorded_run.head
            assert [row async for row in parts.rows()] == [row async for row in alone.rows()]
            assert await parts.counters() == await alone.counters()
            assert sum((await parts.counters()).values()) > 0
    finally:
        await store.close()
    assert seen and seen[-1] == recorded_run.head
    # Each part's scratch file is gone with its folder.
    assert [path.name for path in database.parent.iterdir() if ".rebuild-" in path.name] == []


def test_a_part_runs_the_code_of_the_process_that_starts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    package = Path(part_processes.__file__).resolve().parent
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")

    environment = part_processes._child_environment()

    first, *rest = environment["PYTHONPATH"].split(os.pathsep)
    assert (Path(first) / "orchestrator") == package
    assert rest == ["/elsewhere"]
    monkeypatch.delenv("PYTHONPATH")
    assert part_processes._child_environment()["PYTHONPATH"] == first
