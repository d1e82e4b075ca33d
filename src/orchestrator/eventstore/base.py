"""The event store contract every backend meets (in-memory, SQLite, later PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import msgspec

from orchestrator.eventstore.chain import event_hash
from orchestrator.eventstore.errors import InvalidEvent
from orchestrator.eventstore.keys import IdempotencyClaim, IdempotencyRecord
from orchestrator.eventstore.leases import Fence

_metadata_encoder = msgspec.json.Encoder()


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event about to be appended: its type name, payload bytes and metadata."""

    type: str
    data: bytes
    metadata: dict[str, Any] = {}
    #: The version of the payload's shape, so old shapes can be upcast when read.
    schema_version: int = 1


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the log holds it."""

    position: int
    stream_id: str
    version: int
    type: str
    data: bytes
    metadata: dict[str, Any]
    recorded_at: datetime
    schema_version: int = 1
    #: The chain hash: over this event's stored fields and the previous event's hash.
    hash: str = ""

    def stored_fields(self) -> dict[str, Any]:
        """The fields the chain hash covers, as they are stored."""
        return {
            "position": self.position,
            "stream_id": self.stream_id,
            "version": self.version,
            "type": self.type,
            "data": self.data.decode("utf-8", errors="replace"),
            "metadata": _metadata_encoder.encode(self.metadata).decode(),
            "recorded_at": self.recorded_at.isoformat(),
            "schema_version": self.schema_version,
        }


class Folding(Protocol):
    """What applying an event to the read models reads of it: a RecordedEvent, or the lighter
    FoldingEvent of stores that can read only that (`read_for_folding`)."""

    @property
    def position(self) -> int: ...
    @property
    def stream_id(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def schema_version(self) -> int: ...


class FoldingEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What folding an event into a read model needs of it: a rebuild reads only this, without
    the metadata, time and hash a RecordedEvent carries (stores that can: `read_for_folding`)."""

    position: int
    stream_id: str
    version: int
    type: str
    data: bytes
    schema_version: int = 1


class StreamAppend(msgspec.Struct, frozen=True, kw_only=True):
    """One stream's part of `append_streams`: its events and the version the writer expects."""

    stream_id: str
    expected_version: int
    events: Sequence[NewEvent]


class AppendResult(msgspec.Struct, frozen=True, kw_only=True):
    """Where an append landed: the stream's new version and the last event's global position."""

    version: int
    position: int


def encode_for_storage(event: NewEvent) -> tuple[str, str]:
    """The event's payload and metadata as stored text; InvalidEvent if either cannot be."""
    try:
        data = event.data.decode("utf-8")
        metadata = _metadata_encoder.encode(event.metadata).decode("utf-8")
    except (UnicodeDecodeError, TypeError, ValueError) as exc:
        raise InvalidEvent(f"event {event.type!r} cannot be stored: {exc}") from exc
    return data, metadata


def check_continues(
    event: RecordedEvent, head: int, previous: str, versions: dict[str, int]
) -> tuple[int, str]:
    """Check that an imported event continues the log and its stream; the new (head, hash).

    `versions` holds the streams' current versions and is updated.
    """
    if event.position <= head:
        raise InvalidEvent(f"event at position {event.position} is not after the head {head}")
    expected_version = versions.get(event.stream_id, 0) + 1
    if event.version != expected_version:
        raise InvalidEvent(
            f"event at position {event.position} is version {event.version} of "
            f"{event.stream_id}, expected {expected_version}"
        )
    if event_hash(previous, **event.stored_fields()) != event.hash:
        raise InvalidEvent(f"event at position {event.position} does not continue the chain")
    versions[event.stream_id] = event.version
    return event.position, event.hash


class EventStore(Protocol):
    """An append-only log of streams with optimistic concurrency."""

    #: Told each commit of appends: how many appends it held and how long it took (seconds).
    commit_observers: list[Callable[[int, float], None]]

    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    async def close(self) -> None:
        """Release connections; pending appends finish first."""

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        idempotency: IdempotencyClaim | None = None,
        fence: Fence | None = None,
    ) -> AppendResult:
        """Append `events` atomically if the stream is at `expected_version` (0 = new stream).

        Raises ConcurrencyConflict otherwise, and appends nothing. With `idempotency`, the key's
        row (replacing an expired one) is written in the same transaction as the events. With
        `fence` (PostgreSQL), LeaseLost unless that lease is still held at its epoch.
        """

    async def read_idempotency(self, key: str) -> IdempotencyRecord | None:
        """The recorded key, expired or not (the caller judges its age); None if unknown."""

    async def save_idempotent_answer(
        self, key: str, request_hash: bytes, status: int, body: bytes
    ) -> None:
        """Keep the answer given for a recorded key (of that request), for exact repeats."""

    async def purge_idempotency(self, created_before: float) -> int:
        """Forget keys created before `created_before` (Unix time); how many were forgotten."""

    async def append_streams(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams in one transaction: every part is stored, or none is.

        Each part is checked against its stream's version (after the earlier parts, so a stream
        may appear twice); a mismatch raises ConcurrencyConflict and nothing is appended. For
        writes that must land whole across streams (an import), not for the hot path.
        """

    async def read_stream(
        self, stream_id: str, up_to_version: int | None = None
    ) -> list[RecordedEvent]:
        """The stream's events in version order, optionally only up to `up_to_version`."""

    async def read_all(
        self,
        after: int = 0,
        limit: int = 1000,
        *,
        event_type: str | None = None,
        stream_id: str | None = None,
    ) -> list[RecordedEvent]:
        """Up to `limit` events of the global log with a position greater than `after`,
        optionally only of one type or one stream."""

    async def read_for_folding(self, after: int, limit: int) -> Sequence[Folding]:
        """As `read_all(after, limit)`, with only what folding an event reads of it (the
        projector's reads: a store that decodes metadata, time and hash skips them)."""

    async def next_id(self, kind: str, after: int) -> int | None:
        """A new id for an aggregate of `kind`, above `after` and above every id the log issued
        before, never the same twice, in any process; None where the one process on the log
        hands ids out itself (memory, SQLite)."""

    async def head_position(self) -> int:
        """The position of the last committed event (0 for an empty log)."""

    async def health_problem(self) -> str | None:
        """Why writes are refused or failing now, as a sentence for /health; None while they
        work. A failure of the machine (full disk, database file deleted) must not pass as
        healthy while every command fails."""

    async def import_events(self, events: Iterable[RecordedEvent]) -> None:
        """Copy events from another log as they are (positions, times, hashes), after the head.

        Each must continue the chain and its stream; InvalidEvent otherwise, and none of them is
        stored.
        """

    async def wait_for_events(self, after: int, timeout: float) -> bool:
        """Wait until an event past `after` is committed, or `timeout` seconds; True if one is."""


class PartSource(msgspec.Struct, frozen=True):
    """Where a process of its own reads a part of a log (part_processes.py): a SQLite file
    (`location` is its path), or a PostgreSQL schema (`location` is the URL, `schema` its
    name). `name` says which in messages, without a password."""

    location: str
    schema: str | None
    name: str


@runtime_checkable
class PartedLog(Protocol):
    """A store whose log other processes can read, each a part of its streams."""

    def part_source(self) -> PartSource:
        """Where they read it."""
        ...

    async def head_position(self) -> int:
        """The last committed position."""
        ...
