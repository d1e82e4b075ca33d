"""`orchestrator export` and `orchestrator import`: the log as JSON lines, hashes included.

Each line is one event with every stored field; `data` stays the exact stored text (a string),
so the hash chain can be checked again on the other side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

import msgspec

from orchestrator.eventstore.base import EventStore, RecordedEvent
from orchestrator.eventstore.errors import InvalidEvent

_PAGE = 5000


class ExportedEvent(msgspec.Struct, kw_only=True):
    """One line of an export."""

    position: int
    stream_id: str
    version: int
    type: str
    data: str
    metadata: dict[str, Any]
    recorded_at: datetime
    schema_version: int
    hash: str


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ExportedEvent)


async def export_lines(
    store: EventStore, progress: Callable[[int], None] | None = None
) -> AsyncIterator[bytes]:
    """Every event of the log as one JSON line each, in position order (`progress` is told the
    position reached after each page)."""
    after = 0
    while events := await store.read_all(after, _PAGE):
        for event in events:
            line = ExportedEvent(
                position=event.position,
                stream_id=event.stream_id,
                version=event.version,
                type=event.type,
                data=event.data.decode(),
                metadata=event.metadata,
                recorded_at=event.recorded_at,
                schema_version=event.schema_version,
                hash=event.hash,
            )
            yield _encoder.encode(line) + b"\n"
        after = events[-1].position
        if progress is not None:
            progress(after)


def parse_line(line: bytes, number: int) -> RecordedEvent:
    """One exported line back as an event; InvalidEvent names the line if it is not one."""
    try:
        item = _decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"line {number} is not an exported event: {exc}") from None
    return RecordedEvent(
        position=item.position,
        stream_id=item.stream_id,
        version=item.version,
        type=item.type,
        data=item.data.encode(),
        metadata=item.metadata,
        recorded_at=item.recorded_at,
        schema_version=item.schema_version,
        hash=item.hash,
    )


async def import_lines(
    store: EventStore, lines: Iterable[bytes], progress: Callable[[int], None] | None = None
) -> int:
    """Append the exported events to an empty log, checking the chain; the count imported
    (`progress` is told the count read so far).

    One transaction: a refused line anywhere leaves the target as empty as it was.
    """
    if await store.head_position() != 0:
        raise InvalidEvent("the target log is not empty; import only into a new database")
    count = 0

    def parsed() -> Iterator[RecordedEvent]:
        nonlocal count
        for number, line in enumerate(lines, start=1):
            if line.strip():
                count += 1
                if progress is not None:
                    progress(count)
                yield parse_line(line, number)

    await store.import_events(parsed())
    return count
