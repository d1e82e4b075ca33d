"""Head checkpoints of a PostgreSQL log: its `anchors` table, append-only by trigger.

On SQLite a second copy lives in a file beside the database, which survives the database file
being replaced. A PostgreSQL database has no file beside it that this process owns (the server
may be another machine), so the table is the only copy the backend keeps: it goes wherever the
database goes (backups, replicas), and is lost with the schema. To hold the log to checkpoints
kept elsewhere, export them (`orchestrator export-anchors > anchors.jsonl`) and later pass the
copy to `orchestrator verify --anchors anchors.jsonl`; `verify` notes this when it reads them.
"""

from __future__ import annotations

from orchestrator.eventstore.anchor_store import StoredAnchors
from orchestrator.eventstore.anchors import Anchor
from orchestrator.eventstore.postgres_connection import PostgresDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS anchors (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    position BIGINT NOT NULL,
    hash     TEXT   NOT NULL,
    at       TEXT   NOT NULL,
    key_id   TEXT,
    mac      TEXT
);
CREATE OR REPLACE TRIGGER anchors_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON anchors
    FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_append_only();
"""
_FIELDS = "position, hash, at, key_id, mac"

#: What `verify` says of a database's checkpoints: there is no second copy to compare with.
ONLY_COPY = (
    "PostgreSQL keeps head checkpoints only in the database's anchors table (there is no anchor "
    "file): a wiped or replaced schema takes them with it; a copy kept elsewhere "
    "(`orchestrator export-anchors`, passed to verify with --anchors) is what catches that"
)


class PostgresAnchors:
    """The `anchors` table of a PostgreSQL log (the event store must be open)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def open(self) -> None:
        """Create the table and its trigger if missing (the events schema made the function)."""
        async with self._db.transaction("preparing the anchors table") as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", self._db.ddl_lock_key)
            if not await conn.fetchval("SELECT to_regclass('anchors') IS NOT NULL"):
                await conn.execute(_SCHEMA)

    async def close(self) -> None:
        """Nothing to release: the connections are the backend's pool's."""

    async def _table(self, sql: str) -> list[Anchor]:
        rows = await self._db.fetch("a read of the anchors", sql)
        return [
            Anchor(position=int(p), hash=str(h), at=str(a), key_id=k, mac=m)
            for p, h, a, k, m in rows
        ]

    async def last(self) -> Anchor | None:
        """The table's most recent checkpoint."""
        found = await self._table(f"SELECT {_FIELDS} FROM anchors ORDER BY seq DESC LIMIT 1")
        return found[0] if found else None

    async def append(self, anchor: Anchor) -> None:
        """Insert it into the table (committed before this returns)."""
        async with self._db.transaction("writing a head checkpoint") as conn:
            await conn.execute(
                f"INSERT INTO anchors ({_FIELDS}) VALUES ($1, $2, $3, $4, $5)",
                anchor.position,
                anchor.hash,
                anchor.at,
                anchor.key_id,
                anchor.mac,
            )

    async def read(self) -> StoredAnchors:
        """The table's checkpoints, with a note that they are the only copy kept."""
        table = await self._table(f"SELECT {_FIELDS} FROM anchors ORDER BY seq")
        found = StoredAnchors(sources=[("the database", table)])
        if table:
            found.notes.append(ONLY_COPY)
        return found
