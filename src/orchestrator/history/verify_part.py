"""One process of a verify in several (verify_processes.py): `python -m
orchestrator.history.verify_part` reads its job (a JSON line) on stdin, checks its part of the
log's streams, and writes `P <position>` lines as it goes and one `R <report>` line at the end
(part_processes.py).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from orchestrator.eventstore.chain import GENESIS
from orchestrator.eventstore.sqlite_codec import RowCodec, decode_rows_now, load_lookups
from orchestrator.eventstore.sqlite_schema import COLUMNS
from orchestrator.part_processes import STREAM_PART, file_uri, part_main
from orchestrator.projections.rebuild import paused_collector

#: Positions read at a time (each part's rows of them, and the others' hashes).
_SPAN = 10_000
_RANGE = "position > :after AND position <= :until"
_MINE = f"SELECT {COLUMNS} FROM events WHERE {_RANGE} AND {STREAM_PART} = :part ORDER BY position"
#: The other parts' events serve only for their hashes, which the next event links to.
_OTHERS = (
    f"SELECT position, hash FROM events WHERE {_RANGE} AND {STREAM_PART} != :part ORDER BY position"
)
_AT = "SELECT position, stream_id, hash FROM events WHERE position = ?"


class PartJob(msgspec.Struct, array_like=True):
    """Which part of which log to check."""

    path: str
    part: int
    parts: int
    head: int
    #: The positions the checkpoints name (part 0 reports the events there).
    anchored: list[int]
    #: How many violations to keep.
    keep: int


class PartReport(msgspec.Struct):
    """What one process found in its part of the streams."""

    events: int = 0
    streams: int = 0
    #: Its first violations, (position, stream_id, reason), in position order.
    violations: list[tuple[int, str, str]] = []
    more_violations: int = 0
    #: Part 0 only: (position, stream_id, stored hash) of the event at each checkpointed
    #: position, for the parent's AnchorCheck. (Each part checks that its own events' positions
    #: increase; the rows come in the order of the table's key.)
    anchored: list[tuple[int, str, str]] = []


def check_part(job: PartJob, progress: Any = None) -> PartReport:
    """Check the events up to `job.head` of the streams of part `job.part` (see
    part_processes.STREAM_PART), each linked to the stored hash of the row before it, whichever
    part that is in; `progress(position)` after each page."""
    from orchestrator.history.verify import Checker  # verify imports verify_processes

    checker = Checker(None, keep=job.keep)
    found = PartReport()
    codec = RowCodec()
    conn = sqlite3.connect(file_uri(job.path), uri=True)
    try:
        load_lookups(conn, codec)
        with paused_collector():
            previous: object = None  # the stored hash of the event before, as stored
            after = 0
            while after < job.head:
                until = min(after + _SPAN, job.head)
                page = {"parts": job.parts, "part": job.part, "after": after, "until": until}
                mine = conn.execute(_MINE, page).fetchall()
                others = conn.execute(_OTHERS, page).fetchall()
                links, previous = _links(mine, others, previous)
                if mine:
                    checker.check(decode_rows_now(conn, mine, codec.chained, codec), links)
                after = until
                if progress is not None:
                    progress(after)
            checker.finish()
        if job.part == 0:
            for position in (at for at in job.anchored if at <= job.head):
                found.anchored.extend(
                    (int(at), str(stream), _linked(stored))
                    for at, stream, stored in conn.execute(_AT, (position,))
                )
    finally:
        conn.close()
    report = checker.report
    found.events = report.events
    found.streams = report.streams
    found.violations = [(v.position, v.stream_id, v.reason) for v in report.violations]
    found.more_violations = report.more_violations
    return found


def _links(mine: list[Any], others: list[Any], previous: object) -> tuple[list[str], object]:
    """The hash each of `mine` links to (that of the event just before it, from either list,
    or `previous` for the first if none is), and the last hash of the two lists."""
    links: list[str] = []
    index = 0
    count = len(others)
    for row in mine:
        position = row[0]
        while index < count and others[index][0] < position:
            previous = others[index][1]
            index += 1
        links.append(_linked(previous))
        previous = row[8]
    if index < count:
        previous = others[-1][1]
    return links, previous


def _linked(stored: object) -> str:
    """A stored hash as the next event's hash covers it: 32 bytes as hex, text (a migrated
    row) as it is; nothing before the first event (the chain's start)."""
    if stored is None:
        return GENESIS
    return stored.hex() if type(stored) is bytes else str(stored)


if __name__ == "__main__":
    part_main(PartJob, check_part)
