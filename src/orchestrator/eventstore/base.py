"""The event store contract every backend meets (in-memory, SQLite, later PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec

from orchestrator.eventstore.errors import InvalidEvent


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event about to be appended: its type name, payload bytes and metadata."""

    type: str
    data: bytes
    metadata: dict[str, Any] = {}


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the log holds it."""

    position: int
    stream_id: str
    version: int
    type: str
    data: bytes
    metadata: dict[str, Any]
    recorded_at: datetime


class AppendResult(msgspec.Struct, frozen=True, kw_only=True):
    """Where an append landed: the stream's new version and the last event's global position."""

    version: int
    position: int


_metadata_encoder = msgspec.json.Encoder()


def encode_for_storage(event: NewEvent) -> tuple[str, str]:
    """The event's payload and metadata as stored text; InvalidEvent if either cannot be."""
    try:
        data = event.data.decode("utf-8")
        metadata = _metadata_encoder.encode(event.metadata).decode("utf-8")
    except (UnicodeDecodeError, TypeError, ValueError) as exc:
        raise InvalidEvent(f"event {event.type!r} cannot be stored: {exc}") from exc
    return data, metadata


class EventStore(Protocol):
    """An append-only log of streams with optimistic concurrency."""

    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    async def close(self) -> None:
        """Release connections; pending appends finish first."""

    async def append(
        self, stream_id: str, expected_version: int, events: Sequence[NewEvent]
    ) -> AppendResult:
        """Append `events` atomically if the stream is at `expected_version` (0 = new stream).

        Raises ConcurrencyConflict otherwise, and appends nothing.
        """

    async def read_stream(
        self, stream_id: str, up_to_version: int | None = None
    ) -> list[RecordedEvent]:
        """The stream's events in version order, optionally only up to `up_to_version`."""

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Up to `limit` events of the global log with a position greater than `after`."""

    async def head_position(self) -> int:
        """The position of the last committed event (0 for an empty log)."""

    async def wait_for_events(self, after: int, timeout: float) -> bool:
        """Wait until an event past `after` is committed, or `timeout` seconds; True if one is."""
