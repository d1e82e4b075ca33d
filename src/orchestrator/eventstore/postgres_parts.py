"""One part of a PostgreSQL log, read by a process of its own (part_processes.py) for `verify`:
the events of the streams of part k of n up to a position, each with the stored hash of the row
just before it, whichever part that row is in.

Every part reads every row (a plain ordered scan, little work for the server) and decodes and
checks only its own. Having the server send each part its rows alone would make it work out
each row's link (a window over the rows of every part): measured, that costs the server more
than the parts save, on a machine the server shares.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Sequence

import asyncpg

from orchestrator.eventstore.chain import GENESIS, ChainRow
from orchestrator.eventstore.compact import RowCodec
from orchestrator.eventstore.postgres_codec import COLUMNS, HASH_HEX, chain_rows_of, prepare
from orchestrator.eventstore.postgres_connection import PostgresDatabase

#: Positions read at a time (the next span is read while this one is checked).
_SPAN = 10_000
_SPAN_ROWS = (
    f"SELECT {COLUMNS} FROM events WHERE position > $1 AND position <= $2 ORDER BY position"
)
_AT = f"SELECT position, stream_id, {HASH_HEX} FROM events WHERE position = $1"
# Where COLUMNS has the stored hash: 32 bytes (digest), or the text of a migrated row (hash).
_DIGEST = COLUMNS.replace(" ", "").split(",").index("digest")
_HASH = COLUMNS.replace(" ", "").split(",").index("hash")


def stream_part(stream_id: str, parts: int) -> int:
    """The part (of `parts`) the stream is in: the same in every process, every id in one."""
    return zlib.crc32(stream_id.encode()) % parts


class PostgresPart:
    """The events of part `part` of `parts` of the log in `schema` at `url`, up to `until`,
    through a connection of its own."""

    def __init__(self, url: str, schema: str, part: int, parts: int, until: int) -> None:
        # Two connections: the next span's read holds one while this span's rows may need a
        # lookup loaded (a metadata id stored after the part began).
        self._db = PostgresDatabase(url, schema, pool_size=2)
        self._codec = RowCodec()
        self._part = part
        self._parts = parts
        self.until = until
        #: Rows of any part read so far.
        self.rows = 0

    async def open(self) -> None:
        """Connect, and learn the lookups stored so far (StoreUnavailable if it cannot)."""
        await self._db.open()
        async with self._db.connection("reading the lookups") as conn:
            await prepare(conn, self._codec)

    async def close(self) -> None:
        """Close the connection."""
        await self._db.close()

    async def chain_pages(self) -> AsyncIterator[tuple[list[ChainRow], list[str], int]]:
        """The part's events as the chain reads them, a span of positions at a time: each with
        the stored hash it links to, and the last position of the span."""
        parts, part = self._parts, self._part
        parts_of: dict[str, int] = {}  # a stream's part, worked out once
        previous = GENESIS  # the stored hash of the row before, as the next one links to it
        after = 0
        ahead = asyncio.ensure_future(self._span(after))
        try:
            while after < self.until:
                rows = await ahead
                after = min(after + _SPAN, self.until)
                if after < self.until:
                    ahead = asyncio.ensure_future(self._span(after))
                self.rows += len(rows)
                mine: list[asyncpg.Record] = []
                links: list[str] = []
                for row in rows:
                    stream_id = row[1]
                    found = parts_of.get(stream_id)
                    if found is None:
                        found = parts_of[stream_id] = stream_part(stream_id, parts)
                    if found == part:
                        mine.append(row)
                        links.append(previous)
                    digest = row[_DIGEST]
                    previous = digest.hex() if digest is not None else str(row[_HASH])
                yield await chain_rows_of(self._db, self._codec, mine), links, after
        finally:
            ahead.cancel()

    async def _span(self, after: int) -> list[asyncpg.Record]:
        return await self._db.fetch("a read", _SPAN_ROWS, after, min(after + _SPAN, self.until))

    async def at(self, positions: Sequence[int]) -> list[tuple[int, str, str]]:
        """(position, stream_id, stored hash) of the events at these positions (any part's),
        none past `until`."""
        found: list[tuple[int, str, str]] = []
        async with self._db.connection("a read") as conn:
            for position in positions:
                if position <= self.until:
                    row = await conn.fetchrow(_AT, position)
                    if row is not None:
                        found.append((int(row[0]), str(row[1]), str(row[2])))
        return found
