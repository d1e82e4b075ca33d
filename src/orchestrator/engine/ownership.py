"""Which in-flight workflows and tasks this process drives, when several processes share a log.

Every driver holds the lease of its aggregate (eventstore/leases.py) while it runs: it takes it
before its first step, carries its fence on every append it makes (a context variable the
services read, as they read an idempotency claim), and lets it go when nothing is left to do.
One loop renews all of this process's leases every third of LEASE_SECONDS; a lease found lost
(the process was presumed dead: paused, cut off from the database) cancels its driver, whose late
appends the fence refuses anyway. One loop looks for in-flight aggregates that nobody drives (a
dead holder's expired lease, or a process that stopped and handed its work over) and drives
them, woken by the stopping process's NOTIFY or every half LEASE_SECONDS.

Without a lease store (SQLite, memory: one process by construction) every acquire succeeds, no
fence is carried, and no loop runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

from orchestrator.eventstore.errors import EventStoreError
from orchestrator.eventstore.leases import Fence, LeaseStore, ProcessInfo
from orchestrator.stopping import stop_tasks

log = logging.getLogger(__name__)

_fence: ContextVar[Fence | None] = ContextVar("lease_fence", default=None)

#: How long an aggregate this process cannot run (its step's task is not loaded here, but is
#: in another live process) is left to the others before it is looked at again.
_HAND_OFF_SECONDS = 60.0
#: At most this many such aggregates are remembered (the oldest are forgotten first).
_MAX_HANDED_OFF = 10_000


class HandOver(Exception):
    """Raised by a driver that leaves its aggregate to another process (this one lacks the
    step's task): its lease is handed over, expired at once, instead of deleted."""


def _alive(pid: int) -> bool:
    """True if a process `pid` runs on this host (or cannot be told: not ours to signal)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def step_task_key(name: str) -> str:
    """How a step task is named in a process's registered list."""
    return f"step:{name}"


def task_type_key(name: str) -> str:
    """How a task type is named in a process's registered list."""
    return f"type:{name}"


def current_fence() -> Fence | None:
    """The fence the appends of the driver running now must carry; None outside a driver or
    where no leases exist."""
    return _fence.get()


@dataclass
class _Watched:
    """One kind of aggregate the scanner looks after."""

    kind: str
    #: The ids the engine must drive, as the read models know them.
    in_flight: Callable[[], Awaitable[list[int]]]
    #: Starts driving one (through the kind's Drivers, which take the lease).
    drive: Callable[[int], None]
    is_driving: Callable[[int], bool]
    #: Stops the local driver of one whose lease was lost.
    lose: Callable[[int], None]
    #: When (monotonic) each in-flight id without any lease row was first seen so.
    unleased_since: dict[int, float] = field(default_factory=dict)


class Ownership:
    """This process's leases: taking, fencing, renewing, letting go, taking over."""

    def __init__(
        self,
        leases: LeaseStore | None,
        *,
        ttl: float,
        tasks: Sequence[str] = (),
    ) -> None:
        self._leases = leases
        self.ttl = ttl
        #: What this process can run (step_task_key / task_type_key names), registered at start.
        self.tasks = list(tasks)
        #: This process's name in the lease rows: unique per process life, readable in /health.
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        #: (kind, id) -> (epoch, when it was taken): held leases as this process knows them.
        self._held: dict[tuple[str, int], tuple[int, float]] = {}
        self._watched: dict[str, _Watched] = {}
        self._handed_off: dict[tuple[str, int], float] = {}
        #: Acquires under way: their rows may exist before `_held` says so.
        self._acquiring: dict[tuple[str, int], int] = {}
        self._loops: list[asyncio.Task[None]] = []
        #: Set when the server stops: drivers that end now hand their aggregates over.
        self.stopping = False
        self._stopped = False

    @property
    def shared(self) -> bool:
        """True where other processes may drive this log too (PostgreSQL)."""
        return self._leases is not None

    def held(self) -> int:
        """How many leases this process holds."""
        return len(self._held)

    def watch(
        self,
        kind: str,
        *,
        in_flight: Callable[[], Awaitable[list[int]]],
        drive: Callable[[int], None],
        is_driving: Callable[[int], bool],
        lose: Callable[[int], None],
    ) -> None:
        """Look after aggregates of `kind`: take over those nobody drives, stop lost ones."""
        self._watched[kind] = _Watched(kind, in_flight, drive, is_driving, lose)

    async def start(self) -> None:
        """Register this process and start renewing and scanning (nothing without leases)."""
        if self._leases is None:
            return
        await self._leases.register(
            self.holder, socket.gethostname(), os.getpid(), sorted(self.tasks)
        )
        await self._reap_dead_neighbours()
        self._loops = [
            asyncio.create_task(self._renew_loop(), name="lease-renewal"),
            asyncio.create_task(self._scan_loop(), name="lease-takeover"),
        ]

    async def stop(self) -> None:
        """Stop the loops, expire what this process still holds (the others take it over at
        once), and unregister it."""
        if self._stopped:
            return
        self._stopped = True
        self.stopping = True
        loops, self._loops = self._loops, []
        await stop_tasks(*loops)
        if self._leases is None:
            return
        try:
            async with asyncio.timeout(5.0):
                await self._leases.unregister(self.holder)
        except (EventStoreError, TimeoutError) as exc:  # they expire by themselves then
            log.warning("could not hand this process's leases over at stop: %s", exc)
        self._held.clear()

    async def _reap_dead_neighbours(self) -> None:
        """Let go at once of the leases of earlier server processes on this host that are gone
        (a crash, then this restart): their work is resumed now, as on SQLite, instead of
        after LEASE_SECONDS. A process of this host is judged by its pid, which is only
        meaningful here, so other hosts' processes are left to expire."""
        assert self._leases is not None
        host = socket.gethostname()
        for process in await self._leases.processes(None):
            if process.host != host or process.holder == self.holder:
                continue
            if _alive(process.pid):
                continue
            released = await self._leases.reap(process.holder)
            log.info(
                "process %s of this host is gone; its %d lease(s) are taken over now",
                process.holder,
                released,
            )

    # Taking and letting go -----------------------------------------------------------------

    async def acquire(self, kind: str, aggregate_id: int) -> bool:
        """Take the lease of (kind, id); False while another live process holds it."""
        if self._leases is None:
            return True
        self._acquiring[(kind, aggregate_id)] = self._acquiring.get((kind, aggregate_id), 0) + 1
        try:
            epoch = await self._leases.acquire(kind, aggregate_id, self.holder, self.ttl)
        finally:
            left = self._acquiring.pop((kind, aggregate_id)) - 1
            if left:
                self._acquiring[(kind, aggregate_id)] = left
        if epoch is None:
            return False
        # Taken when the take has committed, not when it was asked for: a renewal begun in
        # between may have run its statement before the take committed, and its answer,
        # without this lease, must not count as the lease lost (the renewal loop judges only
        # leases taken before it began).
        self._held[(kind, aggregate_id)] = (epoch, time.monotonic())
        return True

    def fence_for(self, kind: str, aggregate_id: int) -> Fence | None:
        """The fence of a held lease (None without leases)."""
        held = self._held.get((kind, aggregate_id))
        if held is None:
            return None
        return Fence(kind, aggregate_id, self.holder, held[0])

    def enter(self, fence: Fence | None) -> None:
        """Make the appends of the running asyncio task (a driver) carry `fence`."""
        _fence.set(fence)

    async def release(self, kind: str, aggregate_id: int, *, done: bool) -> None:
        """Let the lease go: deleted when nothing is left to do, else handed over (expired at
        once). A failure is only logged: the lease then expires by itself."""
        if self._held.pop((kind, aggregate_id), None) is None or self._leases is None:
            return
        done = done and not self.stopping
        try:
            await self._leases.release(kind, aggregate_id, self.holder, done=done)
        except EventStoreError as exc:
            log.warning(
                "%s %d: could not let its lease go (%s); it expires", kind, aggregate_id, exc
            )

    def lost(self, kind: str, aggregate_id: int) -> None:
        """Forget a lease that an append found taken over."""
        self._held.pop((kind, aggregate_id), None)

    def hand_off(self, kind: str, aggregate_id: int) -> None:
        """Leave (kind, id) to other processes for a while: this one cannot run its step."""
        self._handed_off[(kind, aggregate_id)] = time.monotonic() + _HAND_OFF_SECONDS
        while len(self._handed_off) > _MAX_HANDED_OFF:
            del self._handed_off[next(iter(self._handed_off))]

    async def runs_elsewhere(self, task_name: str) -> bool:
        """True if another live process has loaded the task (or task type) `task_name`."""
        if self._leases is None:
            return False
        return any(
            task_name in p.tasks and p.holder != self.holder
            for p in await self._leases.processes(self.ttl)
        )

    async def processes(self) -> list[ProcessInfo]:
        """The live processes sharing the log (empty without leases)."""
        if self._leases is None:
            return []
        return await self._leases.processes(self.ttl)

    # Loops ---------------------------------------------------------------------------------

    async def _renew_loop(self) -> None:
        assert self._leases is not None
        while True:
            await asyncio.sleep(self.ttl / 3)
            began = time.monotonic()
            try:
                still = await self._leases.renew(self.holder, self.ttl)
            except EventStoreError as exc:
                log.warning("could not renew this process's leases: %s", exc)
                continue
            # Only leases taken before this renewal began can be judged by its answer.
            lost = [
                key for key, (_, taken) in self._held.items() if taken < began and key not in still
            ]
            for kind, aggregate_id in lost:
                del self._held[(kind, aggregate_id)]
                log.warning(
                    "%s %d: its lease was taken over by another process; stopping its driver",
                    kind,
                    aggregate_id,
                )
                watched = self._watched.get(kind)
                if watched is not None:
                    watched.lose(aggregate_id)
            # Rows of this holder that no driver holds (a driver cancelled outside a stop):
            # renewing them would keep them from everyone for as long as this process lives.
            orphans = still - self._held.keys() - self._acquiring.keys()
            for kind, aggregate_id in orphans:
                with contextlib.suppress(EventStoreError):
                    await self._leases.release(kind, aggregate_id, self.holder, done=False)

    async def _scan_loop(self) -> None:
        assert self._leases is not None
        while True:
            # Half a lease period at most; sooner when another process's lease is due to expire
            # (its holder may be dead: its work is taken over as soon as the lease allows).
            wait = self.ttl / 2
            try:
                for watched in list(self._watched.values()):
                    wait = min(wait, await self._scan(watched))
            except EventStoreError as exc:
                log.warning("could not look for work to take over: %s", exc)
            except Exception:
                log.exception("looking for work to take over failed")
            with contextlib.suppress(EventStoreError):
                await self._leases.wait_for_handover(max(wait, 0.05))

    async def _scan(self, watched: _Watched) -> float:
        """Drive the in-flight aggregates of one kind that nobody drives; the seconds until the
        first live lease of another process expires (the time to look again)."""
        assert self._leases is not None
        now = time.monotonic()
        for key, until in list(self._handed_off.items()):
            if until <= now:
                del self._handed_off[key]
        ids = [
            i
            for i in await watched.in_flight()
            if not watched.is_driving(i) and (watched.kind, i) not in self._handed_off
        ]
        if not ids:
            watched.unleased_since.clear()
            return self.ttl
        next_expiry = self.ttl
        leases = await self._leases.leases_of(watched.kind, ids)
        unleased = {i for i in ids if i not in leases}
        # A new aggregate has no lease for the moment between its creation and its creator's
        # first acquire: only one unleased for a whole lease period is taken.
        for i in list(watched.unleased_since):
            if i not in unleased:
                del watched.unleased_since[i]
        for i in ids:
            lease = leases.get(i)
            if lease is not None:
                takeable = lease.expired
                if not takeable and lease.holder != self.holder:
                    next_expiry = min(next_expiry, lease.expires_in + 0.01)
            else:
                since = watched.unleased_since.setdefault(i, now)
                takeable = now - since >= self.ttl
                if not takeable:
                    next_expiry = min(next_expiry, self.ttl - (now - since) + 0.01)
            if takeable:
                watched.unleased_since.pop(i, None)
                if lease is not None and lease.holder != self.holder:
                    log.info("taking over %s %d from %s", watched.kind, i, lease.holder)
                watched.drive(i)
        return next_expiry
