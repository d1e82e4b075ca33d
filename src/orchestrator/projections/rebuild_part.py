"""One process of a rebuild in several (rebuild_processes.py): `python -m
orchestrator.projections.rebuild_part` folds the events up to a position of the streams of its
part into read-model tables of a scratch file of its own, with the projector a rebuild runs in
one process, and reports the events it applied (part_processes.py).

A stream's events are all in one part, so each aggregate's row is folded from all of its events
by one process; the counters of the parts add up to those of the whole log.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence

import msgspec

from orchestrator.eventstore.base import FoldingEvent, RecordedEvent
from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.eventstore.sqlite_codec import (
    FOLDING_COLUMNS,
    RowCodec,
    decode_rows_now,
    load_lookups,
)
from orchestrator.eventstore.sqlite_schema import COLUMNS
from orchestrator.part_processes import STREAM_PART, file_uri, part_main
from orchestrator.projections.projector import Projector
from orchestrator.projections.rebuild import paused_collector
from orchestrator.projections.sqlite import SQLiteProjectionStorage

#: The prefix of the tables in a part's scratch file.
PART_PREFIX = "part_"
_FOLDING = (
    f"SELECT {FOLDING_COLUMNS} FROM events WHERE position > :after AND position <= :until "
    f"AND {STREAM_PART} = :part ORDER BY position LIMIT :limit"
)
_STREAM = f"SELECT {COLUMNS} FROM events WHERE stream_id = ? AND position <= ? ORDER BY position"


class PartJob(msgspec.Struct, array_like=True):
    """Which part of which log to fold, and where to."""

    path: str
    scratch: str
    part: int
    parts: int
    #: The last position folded.
    until: int


class PartResult(msgspec.Struct):
    """What one process folded."""

    events: int


class PartReader:
    """The log's events of one part, up to a position, read from its file (read-only): what
    the projector reads of a store."""

    def __init__(self, job: PartJob) -> None:
        self._job = job
        self._conn = sqlite3.connect(file_uri(job.path), uri=True)
        self._codec = RowCodec()
        load_lookups(self._conn, self._codec)
        self.events = 0

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    async def read_for_folding(self, after: int, limit: int) -> Sequence[FoldingEvent]:
        """The part's next events after `after`, at most `limit`, none past the job's end."""
        job = self._job
        params = {"parts": job.parts, "part": job.part, "after": after}
        rows = self._conn.execute(_FOLDING, {**params, "until": job.until, "limit": limit})
        found = decode_rows_now(self._conn, rows.fetchall(), self._codec.folding, self._codec)
        self.events += len(found)
        return found

    async def read_stream(self, stream_id: str) -> list[RecordedEvent]:
        """A stream's events up to the job's end (the projector folds an unreadable row's
        aggregate again from them)."""
        rows = self._conn.execute(_STREAM, (stream_id, self._job.until)).fetchall()
        return decode_rows_now(self._conn, rows, self._codec.events, self._codec)

    async def wait_for_events(self, after: int, timeout: float) -> bool:
        """No event comes after the job's end (a part's projector does not follow the log)."""
        return False


async def _fold(job: PartJob, progress: Callable[[int], None]) -> PartResult:
    scratch = SQLiteEventStore(job.scratch)
    await scratch.open()
    reader = PartReader(job)
    try:
        storage = SQLiteProjectionStorage(scratch, prefix=PART_PREFIX)
        await storage.open()
        try:
            projector = Projector(reader, storage, cache_size=10_000)
            await projector.start(follow=False, until=0)
            await projector.catch_up(until=job.until, on_batch=progress)
            progress(job.until)
        finally:
            await storage.close()
    finally:
        reader.close()
        await scratch.close()
    return PartResult(reader.events)


def fold_part(job: PartJob, progress: Callable[[int], None]) -> PartResult:
    """Fold the part's events into the scratch file's tables (PART_PREFIX)."""
    with paused_collector():
        return asyncio.run(_fold(job, progress))


if __name__ == "__main__":
    part_main(PartJob, fold_part)
