"""One PostgreSQL database as the backend uses it: a pool of connections to one schema
(postgres_pool.py), the locks that serialise appends, and the translation of the driver's
errors.

The event store, the read-model tables and the anchors of one backend share this object, so the
backend holds one pool (DATABASE_POOL_SIZE connections at most) however many parts it has. The
event store opens and closes it (the other parts need the store open, as on SQLite).

Every connection has `search_path` set to the backend's schema, so statements name tables
unqualified and two schemas of one database are two separate logs.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg

from orchestrator.eventstore.errors import (
    EventStoreError,
    InvalidEvent,
    StoreUnavailable,
)
from orchestrator.eventstore.postgres_pool import ConnectionPool, NoConnectionFree, PoolClosed
from orchestrator.settings import redact_url

#: Taken first in every transaction that appends to the log, and in a read-model swap: one
#: writer at a time per log, across every process. Its own statement, in a READ COMMITTED
#: transaction: the statements after it get a snapshot taken once the lock is held, so they see
#: the commit of the previous holder (a lock is released only after its commit is visible).
#: A module constant so a test can take the lock away and watch what breaks without it.
LOCK_APPENDS = "SELECT pg_advisory_xact_lock($1)"

# Advisory-lock keys are one bigint per database: the high half says what is locked, the low
# half which schema (a hash: a collision only makes two logs wait on each other, never wrong).
_APPENDS = 0x6F72_6301
_SCHEMA_DDL = 0x6F72_6302
# 0x6F72_6303 was the one-runtime-per-schema lock, before leases let processes share a log.
_PROJECTION = 0x6F72_6304

#: What the driver raises: server errors, client-side errors (closed pool or connection), and
#: network failures (OSError covers refused connections and timeouts).
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)

#: Seconds to wait for a connection to the server (or from a busy pool) before giving up.
CONNECT_TIMEOUT = 10.0


def _lock_key(kind: int, schema: str) -> int:
    low = int.from_bytes(hashlib.sha256(schema.encode()).digest()[:4], "big")
    key = (kind << 32) | low
    return key - (1 << 64) if key >= 1 << 63 else key


def quote_ident(name: str) -> str:
    """`name` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


class PostgresDatabase:
    """A pool of connections to one schema of one PostgreSQL database."""

    def __init__(self, url: str, schema: str = "public", pool_size: int = 10) -> None:
        self.url = url
        self.schema = schema
        self.pool_size = pool_size
        #: How messages name this log: the URL without its password, and the schema.
        self.name = f"{redact_url(url)} (schema {schema})"
        self.append_lock_key = _lock_key(_APPENDS, schema)
        self.ddl_lock_key = _lock_key(_SCHEMA_DDL, schema)
        self.projection_lock_key = _lock_key(_PROJECTION, schema)
        # NOTIFY channels are identifiers of at most 63 bytes; a long schema name is hashed.
        channel = f"orchestrator.{schema}"
        if len(channel) > 63:
            channel = "orchestrator." + hashlib.sha256(schema.encode()).hexdigest()[:40]
        #: The channel appends NOTIFY with the new head position (see PostgresEventStore).
        self.channel = channel
        #: The read models' writer NOTIFYs its new checkpoint here (followers wait on it).
        self.checkpoint_channel = channel[:50] + ".checkpoint"
        #: A stopping process NOTIFYs here that it handed its leases over.
        self.handover_channel = channel[:50] + ".handover"
        # The pool's connections are given back as they were lent, without a reset (UNLISTEN,
        # RESET ALL, unlock all advisory locks: a round trip a use): locks held for a session,
        # LISTEN and settings live on connections of their own (`connect_alone`).
        self._pool: ConnectionPool | None = None

    def _connect_options(self) -> dict[str, Any]:
        return {
            "dsn": self.url,
            "timeout": CONNECT_TIMEOUT,
            "server_settings": {
                "search_path": quote_ident(self.schema),
                "application_name": "orchestrator",
            },
        }

    async def open(self) -> None:
        """Create the pool and the schema if it is missing; StoreUnavailable if unreachable."""
        if self._pool is not None:
            return
        pool = ConnectionPool(lambda: asyncpg.connect(**self._connect_options()), self.pool_size)
        try:
            await pool.open()
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL at {self.name}: {exc}") from exc
        self._pool = pool
        try:
            async with self.transaction("creating the schema") as conn:
                # Serialised: two processes creating one schema at once would collide. Looked up
                # first: CREATE SCHEMA IF NOT EXISTS needs the right to create schemas even when
                # the schema is there, which a role confined to its schema may not have.
                await conn.execute("SELECT pg_advisory_xact_lock($1)", self.ddl_lock_key)
                found = await conn.fetchval(
                    "SELECT 1 FROM pg_namespace WHERE nspname = $1", self.schema
                )
                if found is None:
                    await conn.execute(f"CREATE SCHEMA {quote_ident(self.schema)}")
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close every connection of the pool (waiting for those in use to be released)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            # A connection never given back is cut off: it must not hold the process open.
            await pool.close(CONNECT_TIMEOUT)

    def failure(self, exc: BaseException, doing: str) -> EventStoreError:
        """A driver's exception as the event store's error, naming what was being done."""
        if isinstance(exc, EventStoreError):
            return exc
        if isinstance(exc, asyncpg.DataError):
            # A value a column cannot hold: appended events are checked before they are
            # queued, so this is an imported one (a NUL in its text, say).
            return InvalidEvent(f"{doing} in {self.name} refused a value: {exc}")
        if isinstance(exc, asyncpg.PostgresError):
            return StoreUnavailable(f"{doing} in {self.name} failed: {exc}")
        if isinstance(exc, DRIVER_ERRORS):
            return StoreUnavailable(
                f"{doing} in {self.name} failed: the server cannot be reached: "
                f"{exc or type(exc).__name__}"
            )
        return StoreUnavailable(f"{doing} in {self.name} failed: {type(exc).__name__}: {exc}")

    @contextlib.asynccontextmanager
    async def connection(self, doing: str) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the pool; driver errors inside become StoreUnavailable."""
        pool = self._pool
        if pool is None:
            raise StoreUnavailable(f"the PostgreSQL backend on {self.name} is not open")
        try:
            conn = await pool.acquire(CONNECT_TIMEOUT)
        except (PoolClosed, NoConnectionFree) as exc:
            raise StoreUnavailable(f"{doing} in {self.name} failed: {exc}") from exc
        except DRIVER_ERRORS as exc:
            raise self.failure(exc, doing) from exc
        # Lent again after a use that ended cleanly, with the server's refusal of a statement,
        # or with the caller's own error between statements (a version conflict): the
        # connection is idle again (the pool checks no transaction was left open). A driver
        # error or a cancellation may have cut a statement short: that one is closed.
        broken = False
        try:
            yield conn
        except asyncpg.PostgresError as exc:
            raise self.failure(exc, doing) from exc
        except DRIVER_ERRORS as exc:
            broken = True
            raise self.failure(exc, doing) from exc
        except BaseException as exc:
            broken = not isinstance(exc, Exception)  # a cancellation, not the caller's error
            raise
        finally:
            pool.release(conn, broken=broken)

    @contextlib.asynccontextmanager
    async def transaction(
        self, doing: str = "a write", *, lock_appends: bool = False
    ) -> AsyncIterator[asyncpg.Connection]:
        """A connection in a READ COMMITTED transaction, committed when the block ends.

        With `lock_appends`, the append lock is taken first: nothing else is appended to the
        log (by any process) until this transaction ends.
        """
        async with self.connection(doing) as conn, conn.transaction():
            if lock_appends:
                await self.lock_appends(conn)
            yield conn

    async def lock_appends(self, conn: asyncpg.Connection) -> None:
        """Take the append lock in the transaction `conn` is in (released at its end)."""
        await conn.execute(LOCK_APPENDS, self.append_lock_key)

    async def fetch(self, doing: str, sql: str, *args: object) -> list[asyncpg.Record]:
        """The rows of one query, on a connection of the pool."""
        async with self.connection(doing) as conn:
            return list(await conn.fetch(sql, *args))

    async def has_log(self) -> bool:
        """Whether the schema holds an events table, asked without creating anything (the
        backend creates both when its store opens); StoreUnavailable if it cannot connect."""
        conn = await self.connect_alone()
        try:
            found = await conn.fetchval(
                "SELECT to_regclass($1) IS NOT NULL", f"{quote_ident(self.schema)}.events"
            )
        except DRIVER_ERRORS as exc:
            raise self.failure(exc, "looking for the log") from exc
        finally:
            await conn.close()
        return bool(found)

    async def connect_alone(self) -> asyncpg.Connection:
        """A connection of its own, outside the pool (for a session-level lock or a listener,
        held for as long as the process needs it); StoreUnavailable if it cannot connect."""
        try:
            return await asyncpg.connect(**self._connect_options())
        except DRIVER_ERRORS as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL at {self.name}: {exc}") from exc

    async def listen(
        self,
        on_notify: Callable[[str], None],
        on_lost: Callable[[], None],
        *,
        channel: str | None = None,
    ) -> asyncpg.Connection:
        """A connection of its own (outside the pool: it is held for as long as the store is
        open) listening on `channel` (the appends' by default); `on_notify(payload)` for each
        notification, `on_lost()` when the connection ends."""
        conn = await self.connect_alone()
        try:
            await conn.add_listener(
                channel or self.channel, lambda _c, _pid, _ch, payload: on_notify(payload)
            )
        except DRIVER_ERRORS as exc:
            with contextlib.suppress(*DRIVER_ERRORS):
                await conn.close()
            raise self.failure(exc, "listening for new events") from exc
        conn.add_termination_listener(lambda _c: on_lost())
        return conn
