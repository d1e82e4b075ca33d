"""What the SQLite and PostgreSQL stores share of a group commit: the queued appends, the plan
of one batch (each append checked against its stream's version, the chain continued, the
idempotency keys' rows), and handing each caller its outcome. Each store keeps its own SQL and
transaction around it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from orchestrator.eventstore.base import AppendResult
from orchestrator.eventstore.chain import chain_rows
from orchestrator.eventstore.errors import ConcurrencyConflict, LeaseLost
from orchestrator.eventstore.keys import IdempotencyClaim
from orchestrator.eventstore.leases import Fence

#: (type, data, metadata, schema version) of each event, encoded as stored.
EncodedEvents = list[tuple[str, str, str, int]]


class QueuedAppend:
    """One caller's append, waiting for the next group commit."""

    __slots__ = ("claim", "events", "expected", "fence", "future", "stream_id")

    def __init__(
        self,
        stream_id: str,
        expected: int,
        events: EncodedEvents,
        future: asyncio.Future[AppendResult],
        claim: IdempotencyClaim | None = None,
        fence: Fence | None = None,
    ) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.events = events  # encoded before queueing: a bad event fails its caller alone
        self.future = future
        self.claim = claim  # its key's row is inserted in the same transaction as the events
        self.fence = fence  # the lease it must still hold (PostgreSQL), checked in that one too


def key_row(
    claim: IdempotencyClaim, stream_id: str, version: int, position: int
) -> tuple[object, ...]:
    """The values of a key's row for a claim whose append landed at `version` / `position`."""
    return (claim.key, claim.request_hash, claim.created_at, stream_id, version, position)


@dataclass
class BatchPlan:
    """What one transaction writes for a batch, and each append's outcome."""

    head: int
    inserts: list[tuple[object, ...]] = field(default_factory=list)
    keys: list[tuple[object, ...]] = field(default_factory=list)
    outcomes: list[AppendResult | Exception] = field(default_factory=list)


def plan_batch(
    batch: Sequence[QueuedAppend],
    versions: dict[str, int],
    head: int,
    previous: str,
    recorded_at: str,
    fenced_out: frozenset[int] = frozenset(),
) -> BatchPlan:
    """Check each append against its stream's version (`versions`, read in the transaction, is
    updated as appends are accepted) and chain the accepted ones after `head` / `previous`.
    The appends at the indexes `fenced_out` lost their lease: refused with LeaseLost."""
    plan = BatchPlan(head=head)
    for index, item in enumerate(batch):
        if index in fenced_out and item.fence is not None:
            plan.outcomes.append(LeaseLost(item.fence.kind, item.fence.aggregate_id))
            continue
        actual = versions.get(item.stream_id, 0)
        if actual != item.expected:
            plan.outcomes.append(ConcurrencyConflict(item.stream_id, item.expected, actual))
            continue
        plan.head, previous = chain_rows(
            plan.inserts, item.stream_id, actual, item.events, plan.head, previous, recorded_at
        )
        actual += len(item.events)
        versions[item.stream_id] = actual
        plan.outcomes.append(AppendResult(version=actual, position=plan.head))
        if item.claim is not None:
            plan.keys.append(key_row(item.claim, item.stream_id, actual, plan.head))
    return plan


def settle(batch: Iterable[QueuedAppend], outcomes: Iterable[AppendResult | Exception]) -> None:
    """Hand each caller its outcome (a caller that was cancelled meanwhile is skipped: its events
    are committed anyway)."""
    for item, outcome in zip(batch, outcomes, strict=True):
        if item.future.done():
            continue
        if isinstance(outcome, Exception):
            item.future.set_exception(outcome)
        else:
            item.future.set_result(outcome)


def fail(batch: Iterable[QueuedAppend], failure: Exception) -> None:
    """Hand every caller of a batch that could not be committed the same failure."""
    for item in batch:
        if not item.future.done():
            item.future.set_exception(failure)
