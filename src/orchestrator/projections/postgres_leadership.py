"""The read models' writer claim on PostgreSQL: a session advisory lock on a connection of its
own (released by the server when that connection ends, however the process ends), and the
writer's checkpoint followed through LISTEN/NOTIFY (the save NOTIFYs it, see postgres.py)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.eventstore.postgres_connection import DRIVER_ERRORS, PostgresDatabase
from orchestrator.eventstore.postgres_head import HeadWatch

log = logging.getLogger(__name__)


class PostgresLeadership:
    """Writes the read models of one schema, or follows the process that does."""

    def __init__(self, db: PostgresDatabase, read_checkpoint: Callable[[], Awaitable[int]]) -> None:
        self._db = db
        #: A connection of its own: the lock is held by its session, tried again on it.
        self._conn: asyncpg.Connection | None = None
        self._held = False
        self._checkpoint = HeadWatch(db, read_checkpoint, channel=db.checkpoint_channel)
        self._watching = False

    @property
    def leading(self) -> bool:
        """True while the claim's connection holds the lock."""
        return self._held and self._conn is not None and not self._conn.is_closed()

    async def try_lead(self) -> bool:
        """Try the lock (one statement on the claim's connection, opened again if it was lost)."""
        if self.leading:
            return True
        self._held = False
        if self._conn is None or self._conn.is_closed():
            self._conn = None
            try:
                self._conn = await self._db.connect_alone()
            except StoreUnavailable as exc:
                log.warning("cannot claim the writing of the read models: %s", exc)
                return False
        try:
            key = self._db.projection_lock_key
            self._held = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
        except DRIVER_ERRORS as exc:
            log.warning("cannot claim the writing of the read models: %s", exc)
            with contextlib.suppress(*DRIVER_ERRORS):
                await self._conn.close(timeout=5)
            self._conn = None
        return self.leading

    async def wait_for_checkpoint(self, after: int, timeout: float) -> int:
        """Wake on the writer's NOTIFY (polling while not listening)."""
        if not self._watching:
            self._watching = True
            with contextlib.suppress(StoreUnavailable):
                await self._checkpoint.start()
        await self._checkpoint.wait_past(after, timeout)
        return self._checkpoint.head

    async def close(self) -> None:
        """Drop the claim (its connection) and the checkpoint listener."""
        claim, self._conn, self._held = self._conn, None, False
        if claim is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await claim.close(timeout=5)
        await self._checkpoint.stop()
        self._watching = False
