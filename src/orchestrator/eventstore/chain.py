"""The hash chain over the global log: each event's hash covers its content and its
predecessor's hash, so editing, removing or reordering any stored event breaks the chain from
that position on.

An event's hash is SHA-256 over the predecessor's hash (64 hex digits) followed by each stored
field as text, each preceded by a 0x1F byte: position, stream id, version, type, payload,
metadata, recorded-at time and schema version (`event_hash`). `linked_content` builds the part
after the predecessor's hash from fields already in their hashed byte form, for readers that
check the chain without building whole events (`orchestrator verify`): it hashes alike.
"""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

#: The "previous hash" of the first event.
GENESIS = "0" * 64
#: An event as a chain check reads it: position, stream id, version, type, payload (the bytes
#: that were appended), schema version, its `linked_content`, and its stored hash (hex).
ChainRow = tuple[int, str, int, str, bytes, int, bytes, str]
_SEPARATOR = b"\x1f"
_sha256 = hashlib.sha256


def event_hash(
    previous: str,
    *,
    position: int,
    stream_id: str,
    version: int,
    type: str,
    data: str,
    metadata: str,
    recorded_at: str,
    schema_version: int,
) -> str:
    """SHA-256 over the predecessor's hash and every stored field of the event."""
    # One text encoded once: the same bytes as encoding each field's str() on its own (0x1F is
    # one byte in UTF-8), and what hashed_fields + linked_content build from stored bytes.
    return _sha256(
        f"{previous!s}\x1f{position!s}\x1f{stream_id!s}\x1f{version!s}\x1f{type!s}\x1f{data!s}"
        f"\x1f{metadata!s}\x1f{recorded_at!s}\x1f{schema_version!s}".encode()
    ).hexdigest()


def hashed_payload(data: bytes) -> bytes:
    """A payload's bytes as the chain hashes them: as text, undecodable bytes replaced (what
    `RecordedEvent.stored_fields` gives), so the bytes themselves when they are valid UTF-8."""
    if data.isascii():
        return data
    return data.decode("utf-8", errors="replace").encode()


def linked_content(
    position: object,
    stream_id: object,
    version: object,
    type: object,
    data: bytes,
    metadata: bytes,
    recorded_at: bytes,
    schema_version: object,
) -> bytes:
    """What an event's hash covers after its predecessor's hash, from the payload, metadata and
    time already in their hashed form (`hashed_payload`, the metadata's JSON, the time's ISO
    text, as bytes): `sha256(previous.encode() + linked_content(...)).hexdigest()` equals
    `event_hash(previous, ...)` of the same fields."""
    return b"".join(
        (
            linked_head(position, stream_id, version, type),
            data,
            linked_tail(metadata, recorded_at, schema_version),
        )
    )


def linked_head(position: object, stream_id: object, version: object, type: object) -> bytes:
    """What `linked_content` puts before the payload."""
    return f"\x1f{position!s}\x1f{stream_id!s}\x1f{version!s}\x1f{type!s}\x1f".encode()


def linked_tail(metadata: bytes, recorded_at: bytes, schema_version: object) -> bytes:
    """What `linked_content` puts after the payload (the same for the events of one commit
    that share metadata: a reader of many builds it once for them)."""
    return b"".join(
        (_SEPARATOR, metadata, _SEPARATOR, recorded_at, f"\x1f{schema_version!s}".encode())
    )


def linked_hash(previous: str, content: bytes) -> str:
    """The hash of an event whose `linked_content` is `content`, after `previous`."""
    return _sha256(previous.encode() + content).hexdigest()


@runtime_checkable
class ChainReader(Protocol):
    """A store that can hand its log out as ChainRows, cheaper than as events (SQLite)."""

    async def read_chain(self, after: int, limit: int) -> list[ChainRow]:
        """Up to `limit` events past position `after`, in position order, as ChainRows."""
        ...


def chain_rows(
    inserts: list[tuple[object, ...]],
    stream_id: str,
    version: int,
    events: list[tuple[str, str, str, int]],
    head: int,
    previous: str,
    recorded_at: str,
) -> tuple[int, str]:
    """Add the rows of `events` (after `version` of the stream, `head` of the log, whose last
    hash is `previous`) to `inserts`, in the stored column order (position, stream_id, version,
    type, data, metadata, recorded_at, schema_version, hash); the new head and last hash.

    Every backend chains its appends here, so they hash alike."""
    for type_, data, metadata, schema_version in events:
        head += 1
        version += 1
        previous = _sha256(
            f"{previous!s}\x1f{head}\x1f{stream_id!s}\x1f{version}\x1f{type_!s}\x1f{data!s}"
            f"\x1f{metadata!s}\x1f{recorded_at!s}\x1f{schema_version!s}".encode()
        ).hexdigest()
        inserts.append(
            (head, stream_id, version, type_, data, metadata, recorded_at, schema_version, previous)
        )
    return head, previous
