"""`verify` and rebuilds in several processes (part_processes.py): when they are used, what
they report as they go, what they fill, and what a process that fails turns into.
(test_verify.py, test_anchors.py, test_rebuild.py and test_check_lagging.py run every finding
both ways through the CLI.)"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from orchestrator import cli_parts, part_processes
from orchestrator.eventstore import sqlite_parts
from orchestrator.eventstore.chain import GENESIS
from orchestrator.eventstore.memory import InMemoryEventStore
from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.eventstore.sqlite_parts import STREAM_PART, SQLitePart, _links
from orchestrator.history.verify import verify
from orchestrator.part_processes import (
    MAX_PROCESSES,
    PROCESSES_FROM,
    SERVED_PROCESSES_FROM,
    CheckJob,
    CheckReport,
    FoldJob,
    FoldResult,
    PartFailed,
    process_count,
    run_parts,
)
from orchestrator.projections import projector as projector_module
from orchestrator.projections import sqlite_tables
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
    # A log on a database server: each part connects and reads every row through the server.
    assert process_count(SERVED_PROCESSES_FROM, None, served=True) == 3
    assert process_count(SERVED_PROCESSES_FROM - 1, None, served=True) == 1
    assert SERVED_PROCESSES_FROM > PROCESSES_FROM
    monkeypatch.setattr(part_processes, "usable_cores", lambda: 1)
    assert process_count(10 * PROCESSES_FROM, None) == 1


async def test_a_log_no_other_process_can_read_is_checked_in_this_process(
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
            assert counted(await parts.counters()) == counted(await alone.counters())
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


# The parts' pieces, in this process --------------------------------------------------------------


def test_each_event_links_to_the_row_just_before_it_whichever_part_it_is_in() -> None:
    def mine(*positions: int) -> list[tuple[object, ...]]:
        return [(p, "s", 1, 1, "{}", 1, 1, 1, f"h{p}") for p in positions]

    def others(*positions: int) -> list[tuple[int, str]]:
        return [(p, f"h{p}") for p in positions]

    links, last = _links(mine(2, 3, 7), others(1, 4, 5, 8), None)
    assert links == ["h1", "h2", "h5"] and last == "h8"
    links, last = _links(mine(1, 2), others(), None)
    assert links == [GENESIS, "h1"] and last == "h2"
    links, last = _links([], others(4, 9), "h3")
    assert links == [] and last == "h9"
    links, last = _links(mine(10), [], "h9")
    assert links == ["h9"] and last == "h10"
    assert _links([], [], "h9") == ([], "h9")


def test_every_stream_id_is_in_exactly_one_part() -> None:
    ids = [
        "workflow-7",
        "task-12",
        "x--1",
        "x--9223372036854775808",
        "w-99999999999999999999999",
        "x-abc",
        "w-3-4",
        "no dash",
        "",
        "é-5",
    ]
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        conn.execute("CREATE TABLE events (stream_id TEXT NOT NULL)")
        conn.executemany("INSERT INTO events VALUES (?)", [(stream,) for stream in ids])
        for parts in (2, 3, 4):
            found = dict(
                conn.execute(f"SELECT stream_id, {STREAM_PART} FROM events", {"parts": parts})
            )
            assert set(found) == set(ids)
            assert all(part in range(parts) for part in found.values()), found
            assert found["workflow-7"] == 7 % parts and found["x--1"] == parts - 1


async def test_parts_read_across_spans_link_as_the_whole_log_does(
    recorded_run: RecordedRun, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_parts, "_SPAN", 7)  # a span boundary every 7 positions
    store = SQLiteEventStore(str(database))
    await store.open()
    try:
        whole = await store.read_chain(0, recorded_run.head + 1)
    finally:
        await store.close()
    expected = {
        row[0]: (row, GENESIS if index == 0 else whole[index - 1][7])
        for index, row in enumerate(whole)
    }

    found: dict[int, tuple[object, str]] = {}
    for part_number in range(3):
        part = SQLitePart(str(database), part_number, 3, recorded_run.head)
        try:
            for rows, links, _ in part.chain_pages():
                for row, link in zip(rows, links, strict=True):
                    assert row[0] not in found  # in one part only
                    found[row[0]] = (row, link)
        finally:
            part.close()

    assert found == expected


async def test_parts_folded_across_batches_add_up_to_one_fold(
    recorded_run: RecordedRun, database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parts' projectors fold 5 events a batch (rows saved and loaded again between
    batches), in this process, and the rebuild adds them up: the same tables as one fold."""
    monkeypatch.setattr(projector_module, "_BATCH", 5)

    async def in_this_process(
        jobs: list[FoldJob], result: type[FoldResult], progress: object, what: str
    ) -> list[FoldResult]:
        return [await cli_parts.fold(job, lambda position: None) for job in jobs]

    monkeypatch.setattr(sqlite_tables, "run_parts", in_this_process)
    store = SQLiteEventStore(str(database))
    await store.open()
    tables = SQLiteReadModelTables(store)
    try:
        for prefix, processes in (("one_", 1), ("three_", 3)):
            storage = tables.storage(prefix)
            await storage.open()
            await tables.prefill(prefix, recorded_run.head, processes, None)
            projector = Projector(store, storage, cache_size=10_000)
            await projector.start(follow=False)
            await projector.stop()
            await storage.close()
        async with tables.snapshot("one_") as alone, tables.snapshot("three_") as parts:
            assert [row async for row in parts.rows()] == [row async for row in alone.rows()]
            assert counted(await parts.counters()) == counted(await alone.counters())
    finally:
        await store.close()


async def test_a_large_result_comes_through(recorded_run: RecordedRun, database: Path) -> None:
    """Part 0 reports the event at each checkpoint: a log checkpointed every minute for months
    makes a result line of megabytes."""
    positions = list(range(1, recorded_run.head + 1)) * 200
    job = CheckJob(str(database), 0, 1, recorded_run.head, positions, 20)

    [report] = await run_parts([job], CheckReport, None, "verify")

    assert len(report.anchored) == len(positions)
    assert len(msgspec.json.encode(report)) > 1_000_000


def counted(counters: dict[str, int]) -> dict[str, int]:
    """The counters that are not 0: a counter that went up and down again may be stored as 0
    or not at all, which `--check` takes as the same."""
    return {name: count for name, count in counters.items() if count}


def cli_parts_children() -> list[int]:
    """This process's children that run a part."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"orchestrator.cli_parts" in command:
            found.append(int(entry.name))
    return found


async def test_when_a_part_fails_the_others_are_stopped(
    recorded_run: RecordedRun, database: Path, tmp_path: Path
) -> None:
    good = [CheckJob(str(database), part, 4, recorded_run.head, [], 20) for part in range(3)]
    bad = CheckJob(str(tmp_path / "gone.db"), 3, 4, recorded_run.head, [], 20)

    with pytest.raises(PartFailed):
        await run_parts([*good, bad], CheckReport, None, "verify")

    assert cli_parts_children() == []


def test_a_part_ends_when_the_process_that_started_it_is_gone() -> None:
    """A SIGKILL gives the parent no chance to stop its parts: each watches its stdin, whose
    end closes with the parent, and exits then."""
    part = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from orchestrator.part_processes import watch_parent\n"
            "watch_parent()\n"
            "time.sleep(60)\n",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        assert part.stdin is not None
        time.sleep(0.5)
        assert part.poll() is None  # working, while its stdin is open
        part.stdin.close()  # as the kernel closes it when the parent dies
        assert part.wait(timeout=10) == 3
    finally:
        if part.poll() is None:
            part.kill()
            part.wait()
