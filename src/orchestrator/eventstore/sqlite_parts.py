"""One part of a SQLite log, read from its file by a process of its own (part_processes.py):
the events of the streams of part k of n, up to a position.

The part of a stream is worked out by SQLite (`STREAM_PART`), so a process materializes only
its own rows. Verify reads them with the hash each links to (that of the row just before it,
whichever part that is in: the other parts' rows are read for their hashes alone); a rebuild
reads them as the projector does a store's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

from orchestrator.eventstore.base import FoldingEvent, RecordedEvent
from orchestrator.eventstore.chain import GENESIS, ChainRow
from orchestrator.eventstore.sqlite_codec import (
    FOLDING_COLUMNS,
    RowCodec,
    decode_rows_now,
    load_lookups,
)
from orchestrator.eventstore.sqlite_schema import COLUMNS

#: The part (of :parts) a stream is in, worked out by SQLite (not in Python for each row): the
#: number after the first '-' of its id (workflow-7, task-12) modulo the parts, 0 for an id
#: without one; made non-negative, as SQLite's % keeps the sign (x--1). The same in every
#: process, every id in exactly one part; consecutive workflows and tasks alternate.
STREAM_PART = (
    "((CAST(substr(stream_id, instr(stream_id, '-') + 1) AS INTEGER) % :parts) + :parts) % :parts"
)

#: Positions read at a time for verify (each part's rows of them, and the others' hashes).
_SPAN = 10_000
_RANGE = "position > :after AND position <= :until"
_MINE = f"SELECT {COLUMNS} FROM events WHERE {_RANGE} AND {STREAM_PART} = :part ORDER BY position"
#: The other parts' events serve only for their hashes, which the next event links to.
_OTHERS = (
    f"SELECT position, hash FROM events WHERE {_RANGE} AND {STREAM_PART} != :part ORDER BY position"
)
_FOLDING = (
    f"SELECT {FOLDING_COLUMNS} FROM events WHERE {_RANGE} AND {STREAM_PART} = :part "
    "ORDER BY position LIMIT :limit"
)
_STREAM = f"SELECT {COLUMNS} FROM events WHERE stream_id = ? AND position <= ? ORDER BY position"
_AT = "SELECT position, stream_id, hash FROM events WHERE position = ?"


def file_uri(path: str) -> str:
    """The URI that opens the database file at `path` read-only."""
    return f"file:{quote(path)}?mode=ro"


class SQLitePart:
    """The events of part `part` of `parts` of the log in the file at `path`, up to `until`,
    through a read-only connection of its own."""

    def __init__(self, path: str, part: int, parts: int, until: int) -> None:
        self._conn = sqlite3.connect(file_uri(path), uri=True)
        self._codec = RowCodec()
        load_lookups(self._conn, self._codec)
        self._part = {"parts": parts, "part": part}
        self.until = until
        #: Events read for folding so far; rows of any part read for verify so far.
        self.events = 0
        self.rows = 0

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    # verify --------------------------------------------------------------------------------

    def chain_pages(self) -> Iterator[tuple[list[ChainRow], list[str], int]]:
        """The part's events as the chain reads them, a span of positions at a time: each with
        the stored hash it links to, and the last position of the span."""
        previous: object = None  # the stored hash of the event before, as stored
        after = 0
        while after < self.until:
            until = min(after + _SPAN, self.until)
            span = {**self._part, "after": after, "until": until}
            mine = self._conn.execute(_MINE, span).fetchall()
            others = self._conn.execute(_OTHERS, span).fetchall()
            self.rows += len(mine) + len(others)
            links, previous = _links(mine, others, previous)
            rows = decode_rows_now(self._conn, mine, self._codec.chained, self._codec)
            yield rows, links, until
            after = until

    def at(self, positions: Sequence[int]) -> list[tuple[int, str, str]]:
        """(position, stream_id, stored hash) of the events at these positions (any part's),
        none past `until`."""
        found: list[tuple[int, str, str]] = []
        for position in positions:
            if position <= self.until:
                for at, stream_id, stored in self._conn.execute(_AT, (position,)):
                    found.append((int(at), str(stream_id), _linked(stored)))
        return found

    # A rebuild's projector (projector.EventSource) -------------------------------------------

    async def read_for_folding(self, after: int, limit: int) -> Sequence[FoldingEvent]:
        """The part's next events after `after`, at most `limit`, none past `until`."""
        span = {**self._part, "after": after, "until": self.until, "limit": limit}
        rows = self._conn.execute(_FOLDING, span).fetchall()
        found = decode_rows_now(self._conn, rows, self._codec.folding, self._codec)
        self.events += len(found)
        return found

    async def read_stream(self, stream_id: str) -> list[RecordedEvent]:
        """A stream's events up to `until` (the projector folds an unreadable row's aggregate
        again from them)."""
        rows = self._conn.execute(_STREAM, (stream_id, self.until)).fetchall()
        return decode_rows_now(self._conn, rows, self._codec.events, self._codec)

    async def wait_for_events(self, after: int, timeout: float) -> bool:
        """No event comes past `until` (a part's projector does not follow the log)."""
        return False


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
