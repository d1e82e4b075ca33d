"""Leases and registered processes in PostgreSQL (see leases.py for what they are for).

Every statement is one round trip in autocommit; expiry is judged by the database's `now()`.
A graceful stop expires the stopping process's leases at once and sends NOTIFY on a channel of
its own, so the others take the unfinished work over without waiting for LEASE_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence

import asyncpg

from orchestrator.eventstore.coalescing import Coalescer
from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.eventstore.leases import Fence, LeaseView, ProcessInfo
from orchestrator.eventstore.postgres_connection import DRIVER_ERRORS, PostgresDatabase

#: Takes many leases in one statement (a batch's keys are distinct): rows nobody holds, rows
#: that expired (a new holder: the epoch goes up by one) and rows the holder has already.
_ACQUIRE = """
INSERT INTO leases AS l (kind, aggregate_id, holder, epoch, expires_at)
SELECT u.kind, u.aggregate_id, $3, 1, now() + make_interval(secs => $4)
FROM unnest($1::text[], $2::bigint[]) AS u(kind, aggregate_id)
ON CONFLICT (kind, aggregate_id) DO UPDATE
SET holder = EXCLUDED.holder,
    epoch = CASE WHEN l.holder = EXCLUDED.holder THEN l.epoch ELSE l.epoch + 1 END,
    expires_at = EXCLUDED.expires_at
WHERE l.holder = EXCLUDED.holder OR l.expires_at < now()
RETURNING kind, aggregate_id, epoch
"""

_RENEW = """
WITH renewed AS (
    UPDATE leases SET expires_at = now() + make_interval(secs => $2)
    WHERE holder = $1 RETURNING kind, aggregate_id
), seen AS (
    INSERT INTO processes (holder, host, pid, tasks) VALUES ($1, $3, $4, $5)
    ON CONFLICT (holder) DO UPDATE SET seen_at = now()
)
SELECT kind, aggregate_id FROM renewed
"""

#: Processes silent for this many lease periods are forgotten (their leases expired long ago).
_FORGET_AFTER_PERIODS = 20

#: The check of an append batch's fences, in the append's transaction: the positions (1-based,
#: in the order given) of the fences that still hold. FOR SHARE locks those lease rows until the
#: append commits, so a takeover (an UPDATE of the row) waits for it: the successor then reads a
#: stream that already has this append, or this append finds the lease gone. Never both.
CHECK_FENCES = """
SELECT f.i FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[])
    WITH ORDINALITY AS f(kind, aggregate_id, holder, epoch, i)
JOIN leases l ON l.kind = f.kind AND l.aggregate_id = f.aggregate_id
    AND l.holder = f.holder AND l.epoch = f.epoch
FOR SHARE OF l
"""


async def _forget_holder(conn: asyncpg.Connection, holder: str) -> int:
    """Expire the live leases of `holder` and delete its process row; how many it held."""
    expired = await conn.fetchval(
        "WITH gone AS (UPDATE leases SET expires_at = now() - interval '1 millisecond' "
        "WHERE holder = $1 AND expires_at > now() RETURNING 1) SELECT count(*) FROM gone",
        holder,
    )
    await conn.execute("DELETE FROM processes WHERE holder = $1", holder)
    return int(expired)


def _columns(keys: Sequence[tuple[str, int, str]]) -> tuple[list[str], list[int], list[str]]:
    return [k for k, _, _ in keys], [i for _, i, _ in keys], [h for _, _, h in keys]


async def fences_holding(conn: asyncpg.Connection, fences: Sequence[Fence]) -> set[int]:
    """The indexes (0-based) into `fences` of those whose lease is still held at their epoch."""
    rows = await conn.fetch(
        CHECK_FENCES,
        [f.kind for f in fences],
        [f.aggregate_id for f in fences],
        [f.holder for f in fences],
        [f.epoch for f in fences],
    )
    return {int(row[0]) - 1 for row in rows}


class PostgresLeases:
    """The lease rows of one schema, and the processes that hold them."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db
        self._handover_channel = db.handover_channel
        self._me: tuple[str, int, list[str]] = ("", 0, [])
        self._listener: asyncpg.Connection | None = None
        self._handed_over = asyncio.Event()
        self._takes: Coalescer[tuple[str, int, str, float], int | None] = Coalescer(self._take)
        self._lets_go: Coalescer[tuple[str, int, str, bool], None] = Coalescer(self._let_go)

    async def register(self, holder: str, host: str, pid: int, tasks: Sequence[str]) -> None:
        """Insert (or refresh) this process's row."""
        self._me = (host, pid, list(tasks))
        async with self._db.connection("registering this process") as conn:
            await conn.execute(
                "INSERT INTO processes (holder, host, pid, tasks) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (holder) DO UPDATE SET host = $2, pid = $3, tasks = $4, "
                "seen_at = now()",
                holder,
                host,
                pid,
                list(tasks),
            )

    async def reap(self, holder: str) -> int:
        """Expire a dead process's leases at once and delete its row."""
        async with self._db.transaction("letting a dead process's leases go") as conn:
            return await _forget_holder(conn, holder)

    async def unregister(self, holder: str) -> None:
        """Expire this process's leases, wake the other processes, forget its row."""
        async with self._db.transaction("letting this process's leases go") as conn:
            if await _forget_holder(conn, holder):
                await conn.execute("SELECT pg_notify($1, $2)", self._handover_channel, holder)
        await self._stop_listening()

    async def acquire(self, kind: str, aggregate_id: int, holder: str, ttl: float) -> int | None:
        """The lease's epoch if `holder` has it now; None while another live process has it.
        Takes made at once share one statement."""
        return await self._takes.submit((kind, aggregate_id, holder, ttl))

    async def _take(self, asked: Sequence[tuple[str, int, str, float]]) -> list[int | None]:
        # One statement per holder and period (in practice one: this process's).
        epochs: dict[tuple[str, int, str], int] = {}
        groups: dict[tuple[str, float], set[tuple[str, int]]] = {}
        for kind, aggregate_id, holder, ttl in asked:
            groups.setdefault((holder, ttl), set()).add((kind, aggregate_id))
        async with self._db.connection("taking leases") as conn:
            for (holder, ttl), keys in groups.items():
                rows = await conn.fetch(
                    _ACQUIRE, [k for k, _ in keys], [i for _, i in keys], holder, ttl
                )
                for kind, aggregate_id, epoch in rows:
                    epochs[(str(kind), int(aggregate_id), holder)] = int(epoch)
        return [epochs.get((kind, aggregate_id, holder)) for kind, aggregate_id, holder, _ in asked]

    async def renew(self, holder: str, ttl: float) -> set[tuple[str, int]]:
        """One statement: every lease of `holder` pushed back, its heartbeat written."""
        host, pid, tasks = self._me
        async with self._db.connection("renewing leases") as conn:
            rows = await conn.fetch(_RENEW, holder, ttl, host, pid, tasks)
            # Long-dead processes, and leases expired long ago (handed over for work nobody
            # took, or left by a stop as work ended): an in-flight aggregate without a row is
            # taken over all the same (after a lease period).
            await conn.execute(
                "DELETE FROM processes WHERE seen_at < now() - make_interval(secs => $1)",
                ttl * _FORGET_AFTER_PERIODS,
            )
            await conn.execute(
                "DELETE FROM leases WHERE expires_at < now() - make_interval(secs => $1)",
                ttl * _FORGET_AFTER_PERIODS,
            )
        return {(str(kind), int(aggregate_id)) for kind, aggregate_id in rows}

    async def release(self, kind: str, aggregate_id: int, holder: str, *, done: bool) -> None:
        """Delete the lease (done), or expire it and wake the others (handed over). Lets-go
        made at once share one statement."""
        await self._lets_go.submit((kind, aggregate_id, holder, done))

    async def _let_go(self, asked: Sequence[tuple[str, int, str, bool]]) -> list[None]:
        done = [(k, i, h) for k, i, h, finished in asked if finished]
        handed = [(k, i, h) for k, i, h, finished in asked if not finished]
        async with self._db.connection("letting leases go") as conn:
            if done:
                await conn.execute(
                    "DELETE FROM leases l USING unnest($1::text[], $2::bigint[], $3::text[]) "
                    "AS u(kind, aggregate_id, holder) WHERE l.kind = u.kind "
                    "AND l.aggregate_id = u.aggregate_id AND l.holder = u.holder",
                    *_columns(done),
                )
            if handed:
                await conn.execute(
                    "UPDATE leases l SET expires_at = now() - interval '1 millisecond' "
                    "FROM unnest($1::text[], $2::bigint[], $3::text[]) "
                    "AS u(kind, aggregate_id, holder) WHERE l.kind = u.kind "
                    "AND l.aggregate_id = u.aggregate_id AND l.holder = u.holder",
                    *_columns(handed),
                )
                await conn.execute("SELECT pg_notify($1, $2)", self._handover_channel, "")
        return [None] * len(asked)

    async def leases_of(self, kind: str, ids: Iterable[int]) -> dict[int, LeaseView]:
        """The lease rows of `ids`, with whether each is past its expiry."""
        rows = await self._db.fetch(
            "a read of leases",
            "SELECT aggregate_id, holder, EXTRACT(EPOCH FROM expires_at - now())::float8 "
            "FROM leases "
            "WHERE kind = $1 AND aggregate_id = ANY($2::bigint[])",
            kind,
            list(ids),
        )
        return {
            int(row[0]): LeaseView(
                aggregate_id=int(row[0]), holder=str(row[1]), expires_in=float(row[2])
            )
            for row in rows
        }

    async def processes(self, ttl: float | None) -> list[ProcessInfo]:
        """Live processes (renewed within `ttl` s; every one for None), oldest first, with
        their live leases."""
        rows = await self._db.fetch(
            "a read of processes",
            "SELECT p.holder, p.host, p.pid, p.tasks, "
            "EXTRACT(EPOCH FROM now() - p.seen_at)::float8, "
            "(SELECT count(*) FROM leases l WHERE l.holder = p.holder AND l.expires_at > now()) "
            "FROM processes p "
            "WHERE $1::float8 IS NULL OR p.seen_at > now() - make_interval(secs => $1) "
            "ORDER BY p.started_at, p.holder",
            ttl,
        )
        return [
            ProcessInfo(
                holder=str(row[0]),
                host=str(row[1]),
                pid=int(row[2]),
                tasks=tuple(row[3]),
                seen_seconds_ago=max(0.0, float(row[4])),
                leases=int(row[5]),
            )
            for row in rows
        ]

    async def wait_for_handover(self, timeout: float) -> bool:
        """Wait for a NOTIFY of leases let go; without a listening connection, just wait."""
        if self._listener is None:
            with contextlib.suppress(StoreUnavailable):
                self._listener = await self._db.listen(
                    self._notified, self._lost, channel=self._handover_channel
                )
        waiting = self._handed_over
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await waiting.wait()
        if waiting.is_set():
            self._handed_over = asyncio.Event()
            return True
        return False

    def _notified(self, _payload: str) -> None:
        self._handed_over.set()

    def _lost(self) -> None:
        self._listener = None

    async def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await listener.close(timeout=5)

    async def close(self) -> None:
        """Close the listening connection, if any."""
        await self._stop_listening()
