"""Idempotency keys as the event store keeps them, beside the log.

A key is claimed by the append that records its command: the store writes the key's row in the
same transaction as the events, so a command is never recorded without its key (a client whose
connection dropped finds the key on retry, even if the server died right after the commit), and
a key is never recorded without its command. The answer the client was given is added later, when
there is one; until then the row points at the stream version the command left, from which the
answer can be rebuilt.
"""

from __future__ import annotations

import msgspec


class IdempotencyClaim(msgspec.Struct, frozen=True, kw_only=True):
    """A key to record with an append: the key, a hash of its request, and when it was sent."""

    key: str
    #: SHA-256 of the request's method, path and body (see http/idempotency.py).
    request_hash: bytes
    #: Unix time of the request, by the server's clock; the key expires a TTL after it.
    created_at: float


class IdempotencyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A recorded key: what it claimed, where its command landed, and the answer if saved."""

    key: str
    request_hash: bytes
    created_at: float
    #: The stream the command appended to, and the stream's version after that append.
    stream_id: str
    version: int
    #: The global position of the append's last event (reads wait for it).
    position: int
    #: The answer given, once saved; None while only the command is known (answer lost).
    status: int | None = None
    body: bytes | None = None


def record_of(
    claim: IdempotencyClaim, stream_id: str, version: int, position: int
) -> IdempotencyRecord:
    """The row a successful append with `claim` leaves behind."""
    return IdempotencyRecord(
        key=claim.key,
        request_hash=claim.request_hash,
        created_at=claim.created_at,
        stream_id=stream_id,
        version=version,
        position=position,
    )
