"""`verify` of a large SQLite log in several processes at once.

One process checks at most about 140,000 events a second, whatever the machine has: checking an
event (its payload inflated and hashed, decoded, folded through the transition table) is Python,
and the interpreter's lock lets one thread run Python at a time. A log in a file can be read by
several processes at once, each with a lock of its own. Process k of n checks the events of the
streams whose name hashes to k (crc32: the same in every process), and reads every row up to the
same head: the chain link of each of its events (the stored hash of the event before it,
whichever stream that is in) is at hand, and each stream's versions and fold are all in one
process. So every event is checked once, by one process, as `verify` alone would check it; the
parts' findings are merged in position order.

The rows up to the head are the same in every process's snapshot (the log is append-only), so a
server may keep appending meanwhile: what it appends after the head is not checked, as in a
single-process verify.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from orchestrator.eventstore.base import EventStore
from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.history.verify_part import PartJob, PartReport
from orchestrator.part_processes import process_count, run_parts


def processes_for(store: EventStore, head: int, asked: int | None) -> tuple[str, int] | None:
    """The log's file and how many processes to check it with (part_processes.process_count),
    or None to check it in this one. Only a SQLite log can be read by other processes this
    way."""
    if not isinstance(store, SQLiteEventStore):
        return None
    count = process_count(head, asked)
    return (store.path, count) if count > 1 else None


async def check_in_processes(
    path: str,
    parts: int,
    head: int,
    anchored: Collection[int],
    keep: int,
    progress: Callable[[int], None] | None,
) -> list[PartReport]:
    """Each part's report, checked by `parts` processes at once (verify_part.py)."""
    positions = sorted(anchored)
    jobs = [PartJob(path, part, parts, head, positions, keep) for part in range(parts)]
    return await run_parts(
        "orchestrator.history.verify_part", jobs, PartReport, progress, f"verify of {path}"
    )
