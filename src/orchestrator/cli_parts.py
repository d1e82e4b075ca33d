"""`python -m orchestrator.cli_parts`: one process of a verify or a rebuild in several
(part_processes.py). It reads its job (a JSON line) on stdin, does its part of a log, and writes
`P <position>` lines as it goes and one `R <result>` line at the end.

- A check (`verify`, of a SQLite or PostgreSQL log): the events of its part's streams up to the
  head, each against the stored hash of the row before it, folded through the transition table
  as `verify` does alone.
- A fold (a rebuild): its part's events up to a position, with the projector a rebuild runs,
  into read-model tables of a scratch file of its own, which the rebuild then adds up.

A stream's events are all in one part, so each aggregate's row, versions and fold are all in
one process; the counters of the parts add up to those of the whole log.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import msgspec

from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.eventstore.sqlite_parts import SQLitePart
from orchestrator.history.verify import Checker
from orchestrator.part_processes import CheckJob, CheckReport, FoldJob, FoldResult, watch_parent
from orchestrator.projections.projector import Projector
from orchestrator.projections.rebuild import paused_collector
from orchestrator.projections.sqlite import SQLiteProjectionStorage
from orchestrator.projections.sqlite_tables import PART_PREFIX


def check(job: CheckJob, progress: Callable[[int], None]) -> CheckReport:
    """Check the part's events of a SQLite log; part 0 also reports the events at the
    checkpoints."""
    checker = Checker(None, keep=job.keep)
    part = SQLitePart(job.log, job.part, job.parts, job.head)
    try:
        for rows, links, reached in part.chain_pages():
            checker.check(rows, links)
            progress(reached)
        checker.finish()
        anchored = part.at(job.anchored) if job.part == 0 else []
    finally:
        part.close()
    return _check_report(checker, part.rows, anchored)


async def check_postgres(job: CheckJob, progress: Callable[[int], None]) -> CheckReport:
    """As `check`, of a PostgreSQL log."""
    # Here, not at the top: the driver is an extra, which a SQLite log's parts do without.
    from orchestrator.eventstore.postgres_parts import PostgresPart

    assert job.schema is not None
    checker = Checker(None, keep=job.keep)
    part = PostgresPart(job.log, job.schema, job.part, job.parts, job.head)
    await part.open()
    try:
        async for rows, links, reached in part.chain_pages():
            checker.check(rows, links)
            progress(reached)
        checker.finish()
        anchored = await part.at(job.anchored) if job.part == 0 else []
    finally:
        await part.close()
    return _check_report(checker, part.rows, anchored)


def _check_report(checker: Checker, rows: int, anchored: list[tuple[int, str, str]]) -> CheckReport:
    report = checker.report
    return CheckReport(
        events=report.events,
        rows=rows,
        streams=report.streams,
        violations=[(v.position, v.stream_id, v.reason) for v in report.violations],
        more_violations=report.more_violations,
        anchored=anchored,
    )


async def fold(job: FoldJob, progress: Callable[[int], None]) -> FoldResult:
    """Fold the part's events into the scratch file's tables (PART_PREFIX)."""
    scratch = SQLiteEventStore(job.scratch)
    await scratch.open()
    part = SQLitePart(job.path, job.part, job.parts, job.until)
    try:
        storage = SQLiteProjectionStorage(scratch, prefix=PART_PREFIX)
        await storage.open()
        try:
            projector = Projector(part, storage, cache_size=10_000)
            await projector.start(follow=False, until=0)
            await projector.catch_up(until=job.until, on_batch=progress)
            progress(job.until)
        finally:
            await storage.close()
    finally:
        part.close()
        await scratch.close()
    return FoldResult(part.events)


def main() -> None:
    """The job from stdin; progress and the result to stdout."""
    job = msgspec.json.decode(sys.stdin.buffer.readline(), type=CheckJob | FoldJob)
    watch_parent()
    out = sys.stdout.buffer

    def progress(position: int) -> None:
        out.write(b"P %d\n" % position)
        out.flush()

    # Python's cyclic collector off, as for any bulk pass over the log (rebuild.py).
    with paused_collector():
        if isinstance(job, CheckJob) and job.schema is not None:
            found: CheckReport | FoldResult = asyncio.run(check_postgres(job, progress))
        elif isinstance(job, CheckJob):
            found = check(job, progress)
        else:
            found = asyncio.run(fold(job, progress))
    out.write(b"R " + msgspec.json.encode(found) + b"\n")
    out.flush()


if __name__ == "__main__":
    main()
