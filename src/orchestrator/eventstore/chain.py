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
