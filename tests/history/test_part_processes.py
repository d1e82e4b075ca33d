"""`verify` and rebuilds in several processes (part_processes.py): when they are used, what
they report as they go, what they fill, and what a process that fails turns into.
(test_verify.py, test_anchors.py, test_rebuild.py and test_check_lagging.py run every finding
both ways through the CLI.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import part_processes
from orchestrator.eventstore.errors import EventStoreError
from orchestrator.eventstore.memory import InMemoryEventStore
from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.history.verify import verify
from orchestrator.history.verify_processes import check_in_processes, processes_for
from orchestrator.part_processes import MAX_PROCESSES, PROCESSES_FROM
from orchestrator.projections.projector import Projector
from orchestrator.projections.sqlite_tables import SQLiteReadModelTables
from tests.history.conftest import RecordedRun

pytestmark = pytest.mark.anyio


async def test_a_large_sqlite_log_is_checked_by_one_process_a_core(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteEventStore(str(database))
    monkeypatch.setattr(part_processes, "usable_cores", lambda: 3)

    assert processes_for(store, PROCESSES_FROM, None) == (str(database), 3)
    assert processes_for(store, PROCESSES_FROM - 1, None) is None  # one process is quicker
    assert processes_for(store, 10, 2) == (str(database), 2)  # asked for
    assert processes_for(store, PROCESSES_FROM, 1) is None
    assert processes_for(store, 10, 64) == (str(database), MAX_PROCESSES)
    monkeypatch.setattr(part_processes, "usable_cores", lambda: 1)
    assert processes_for(store, 10 * PROCESSES_FROM, None) is None
    # Another store's log cannot be read by other processes this way.
    assert processes_for(InMemoryEventStore(), 10 * PROCESSES_FROM, 4) is None


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


async def test_a_part_that_fails_fails_the_verify_with_its_reason(tmp_path: Path) -> None:
    missing = tmp_path / "gone.db"

    with pytest.raises(EventStoreError) as failed:
        await check_in_processes(str(missing), 2, 10, (), 20, None)

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
