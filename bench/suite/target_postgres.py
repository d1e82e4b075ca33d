"""PostgreSQL as a target (`--database-url postgresql://...`): a schema of its own per figure,
dropped at the end of the run; the raw references through asyncpg on the store's own tables.

Everything else of the suite is the same on both kinds: all this needs from the project is
`parse_database` and `make_backend` knowing PostgreSQL (the backend), and asyncpg.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

from orchestrator.backend import make_backend
from orchestrator.eventstore.postgres_codec import COLUMNS
from orchestrator.settings import SettingsError, parse_database, redact_url
from suite.context import Context
from suite.targets import RAW_DATA, RAW_METADATA, create_schema


async def postgres_problem(url: str) -> str | None:
    """Why the suite cannot run on `url`, in one line; None when it can."""
    try:
        database = parse_database(url)
    except SettingsError as exc:
        return f"this checkout has no PostgreSQL backend yet ({exc})"
    if database.backend != "postgres":
        return (
            f"this checkout has no PostgreSQL backend yet ({redact_url(url)} is read as a "
            f"{database.backend} database)"
        )
    try:
        backend = make_backend(database)
    except Exception as exc:
        return f"this checkout's PostgreSQL backend cannot be made: {type(exc).__name__}: {exc}"
    if "postgres" not in type(backend.store).__name__.lower():
        return "this checkout has no PostgreSQL backend yet (make_backend has no branch for it)"
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed: .venv/bin/pip install -e '.[postgres]'"
    try:
        conn = await asyncpg.connect(database.url, timeout=10)
        await conn.close()
    except Exception as exc:
        return f"cannot connect to {redact_url(url)}: {exc}"
    return None


def _with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


class PostgresTarget:
    """A schema per figure in the database `url` names (any `?schema=` of it is replaced)."""

    kind = "postgres"
    commit_reference = "postgres_commit_events_per_s"
    scan_reference = "postgres_scan_rows_per_s"
    server_settings: dict[str, str] = {}  # noqa: RUF012 - read only

    def __init__(self, url: str) -> None:
        database = parse_database(url)
        assert database.url is not None
        #: The URL asyncpg takes, without a schema.
        self.base = database.url
        self.version = ""

    async def _connect(self, schema: str | None = None) -> Any:
        import asyncpg

        settings = {"search_path": schema} if schema else {}
        return await asyncpg.connect(self.base, server_settings=settings)

    async def fresh(self, ctx: Context, label: str) -> str:
        """A new schema, dropped (with everything in it) when the run ends."""
        schema = f"bench_{label.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        conn = await self._connect()
        try:
            self.version = str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()
        ctx.stack.push_async_callback(self._drop, schema)
        return _with_schema(self.base, schema)

    async def _drop(self, schema: str) -> None:
        conn = await self._connect()
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    async def raw_commit_rate(self, url: str, seconds: float) -> float:
        """One INSERT per transaction on one connection, for `seconds`: a row as the store
        writes one (schema 4: type and metadata by id, time in microseconds, the hash as 32
        bytes; the payload as text, undeflated), which the table's checks accept."""
        await create_schema(url)
        conn = await self._connect(parse_database(url).schema)
        try:
            await conn.execute("INSERT INTO event_types (id, name) VALUES (1, 'StepSucceeded')")
            await conn.execute(
                "INSERT INTO event_metadata (id, metadata) VALUES (1, $1)", RAW_METADATA
            )
            insert = await conn.prepare(
                "INSERT INTO events (position, stream_id, version, type_id, data, metadata_id, "
                "recorded_us, schema_version, digest) VALUES ($1, $2, $3, 1, $4, 1, $5, 2, $6)"
            )
            position = 0
            began = time.perf_counter()
            deadline = began + seconds
            while time.perf_counter() < deadline:
                position += 1
                async with conn.transaction():
                    await insert.fetch(
                        position,
                        "raw-1",
                        position,
                        RAW_DATA,
                        1_767_225_600_000_000 + position,
                        position.to_bytes(32, "big"),
                    )
            return position / (time.perf_counter() - began)
        finally:
            await conn.close()

    async def raw_scan_rate(self, url: str) -> float:
        """A cursor over SELECT every column ORDER BY position, 5,000 rows a fetch (both forms'
        columns: a compact row's payload is in `packed`, a migrated row's in `data`)."""
        conn = await self._connect(parse_database(url).schema)
        try:
            began = time.perf_counter()
            rows = 0
            async with conn.transaction():
                cursor = await conn.cursor(f"SELECT {COLUMNS} FROM events ORDER BY position")
                while batch := await cursor.fetch(5000):
                    rows += len(batch)
            return rows / (time.perf_counter() - began)
        finally:
            await conn.close()

    async def size_bytes(self, url: str) -> int:
        """Every table of the schema with its indexes and TOAST, after a CHECKPOINT."""
        schema = parse_database(url).schema
        conn = await self._connect()
        try:
            with contextlib.suppress(Exception):  # needs a superuser (or pg_checkpoint)
                await conn.execute("CHECKPOINT")
            size = await conn.fetchval(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
                schema,
            )
            return int(size)
        finally:
            await conn.close()

    def dbos_settings(self, url: str) -> dict[str, str]:
        """The same database, DBOS's tables in the (fresh) schema of `url`."""
        schema = parse_database(url).schema
        assert schema is not None
        return {"system_database_url": self.base, "schema": schema}

    def describe(self) -> str:
        """PostgreSQL and its version."""
        return f"PostgreSQL {self.version}".strip()
