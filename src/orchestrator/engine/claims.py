"""The idempotency key of the command being carried out, on its way from the API to the append.

The key must be written in the same transaction as the command's events (else a crash between
the two would let a retry run the command twice), but the coordinator and task runner know
nothing of HTTP. So the API puts the key in a context variable around the command, and the
service hands it to the first append made in that context; the append marks it recorded, so the
engine's later appends (steps run by drivers started from the request, which inherit the
context) never carry it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from orchestrator.eventstore.keys import IdempotencyClaim, IdempotencyRecord


class PendingClaim:
    """A key waiting for the append of its command, then the record that append left."""

    __slots__ = ("claim", "recorded")

    def __init__(self, claim: IdempotencyClaim) -> None:
        self.claim = claim
        #: Set by the append that carried the key; None while the command appended nothing.
        self.recorded: IdempotencyRecord | None = None


_current: ContextVar[PendingClaim | None] = ContextVar("idempotency_claim", default=None)


@contextlib.contextmanager
def claiming(claim: IdempotencyClaim) -> Iterator[PendingClaim]:
    """Within this block, the first append of a command records `claim` with its events."""
    pending = PendingClaim(claim)
    token = _current.set(pending)
    try:
        yield pending
    finally:
        _current.reset(token)


def unrecorded_claim() -> PendingClaim | None:
    """The key the next append must record, if a command with a key has not appended yet."""
    pending = _current.get()
    return pending if pending is not None and pending.recorded is None else None
