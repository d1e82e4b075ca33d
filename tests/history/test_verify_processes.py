"""`verify` in several processes (history/verify_processes.py): when it is used, what it reports
as it goes, and what a process that fails turns into. (test_verify.py and test_anchors.py run
every finding both ways through the CLI.)"""

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
