"""Leases: which process drives each in-flight workflow and task when several share one log.

A lease is a row per aggregate (kind, id) naming its holder, an epoch and when it expires. The
holder renews all its leases in one statement every third of LEASE_SECONDS; a holder that dies
stops renewing, its leases expire, and another process takes them over with the epoch raised by
one. The database's clock decides expiry, so hosts whose clocks disagree still agree on it.

Fencing: each append a driver makes carries its `Fence` (kind, id, holder, epoch). The store
checks, in the append's own transaction and with the lease row locked against a takeover, that
the lease is still the holder's at that epoch; if not it refuses the append (LeaseLost). So a
process that was presumed dead (paused, cut off) and wakes up late can never record the outcome
of a step that its successor now owns.

Only the PostgreSQL backend has leases: SQLite and memory are one process by construction (the
file lock), where the engine drives everything it resumes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Fence:
    """What an append by a lease holder proves: it still holds (kind, id) at `epoch`."""

    kind: str
    aggregate_id: int
    holder: str
    epoch: int


@dataclass(frozen=True)
class LeaseView:
    """A lease as a scanner sees it: who holds it, and whether it is past its expiry."""

    aggregate_id: int
    holder: str
    #: Seconds until it expires (negative once it has).
    expires_in: float

    @property
    def expired(self) -> bool:
        """True once its holder failed to renew it in time (or handed it over)."""
        return self.expires_in <= 0


@dataclass(frozen=True)
class ProcessInfo:
    """A server process sharing the log, as it registered itself (and last renewed)."""

    holder: str
    host: str
    pid: int
    #: The names of the step tasks and task types this process can run.
    tasks: tuple[str, ...]
    #: Seconds since its last renewal.
    seen_seconds_ago: float
    leases: int


class LeaseStore(Protocol):
    """The leases and registered processes of one log (PostgreSQL)."""

    async def register(self, holder: str, host: str, pid: int, tasks: Sequence[str]) -> None:
        """Say this process is alive and what it can run (replacing an earlier row of it)."""

    async def unregister(self, holder: str) -> None:
        """Forget this process and expire every lease it still holds, waking the others now."""

    async def reap(self, holder: str) -> int:
        """Expire every lease of `holder`, a process known to be dead, and forget it; how many
        leases it held."""

    async def acquire(self, kind: str, aggregate_id: int, holder: str, ttl: float) -> int | None:
        """Take the lease if nobody holds it, it expired, or `holder` has it already; its epoch
        (raised by one when it changes holder), or None while another live process holds it."""

    async def renew(self, holder: str, ttl: float) -> set[tuple[str, int]]:
        """Push back the expiry of every lease `holder` holds (and its own heartbeat); the
        (kind, id) of those it still holds."""

    async def release(self, kind: str, aggregate_id: int, holder: str, *, done: bool) -> None:
        """Let go of the lease: deleted when the aggregate needs nothing more (`done`), else
        expired at once so that another process takes it over without waiting."""

    async def leases_of(self, kind: str, ids: Iterable[int]) -> dict[int, LeaseView]:
        """The leases of those aggregates that have one (expired ones included)."""

    async def processes(self, ttl: float | None) -> list[ProcessInfo]:
        """The processes that renewed within `ttl` seconds (all registered ones for None),
        with how many live leases each holds."""

    async def wait_for_handover(self, timeout: float) -> bool:
        """Wait until a process lets leases go without finishing (a graceful stop), or
        `timeout` seconds; True if one did."""
