"""The hash chain over the global log: each event's hash covers its content and its
predecessor's hash, so editing, removing or reordering any stored event breaks the chain from
that position on."""

from __future__ import annotations

import hashlib

#: The "previous hash" of the first event.
GENESIS = "0" * 64
_SEPARATOR = b"\x1f"


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
    digest = hashlib.sha256(previous.encode())
    for part in (position, stream_id, version, type, data, metadata, recorded_at, schema_version):
        digest.update(_SEPARATOR)
        digest.update(str(part).encode())
    return digest.hexdigest()


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
        previous = event_hash(
            previous,
            position=head,
            stream_id=stream_id,
            version=version,
            type=type_,
            data=data,
            metadata=metadata,
            recorded_at=recorded_at,
            schema_version=schema_version,
        )
        inserts.append(
            (head, stream_id, version, type_, data, metadata, recorded_at, schema_version, previous)
        )
    return head, previous
