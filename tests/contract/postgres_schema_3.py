"""A PostgreSQL log as the release before the compact rows left it (event schema 3, git 1265802):
its tables made with that release's statements, its rows as that release wrote them (every field
as the text the chain hashes), so the tests can open it with this release and watch it migrate.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from orchestrator.eventstore.base import RecordedEvent
from orchestrator.eventstore.postgres_connection import quote_ident

#: The tables of event schema 3, as schema 1 and the migrations to 2 and 3 made them.
SCHEMA_3 = """
CREATE TABLE events (
    position       BIGINT  PRIMARY KEY CHECK (position >= 1),
    stream_id      TEXT    NOT NULL,
    version        BIGINT  NOT NULL CHECK (version >= 1),
    type           TEXT    NOT NULL,
    data           TEXT    NOT NULL,
    metadata       TEXT    NOT NULL,
    recorded_at    TEXT    NOT NULL,
    schema_version INTEGER NOT NULL DEFAULT 1,
    hash           TEXT    NOT NULL,
    CONSTRAINT events_stream_version UNIQUE (stream_id, version)
);
CREATE OR REPLACE FUNCTION orchestrator_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% are append-only: % refused', TG_TABLE_NAME, TG_OP;
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_append_only();
CREATE TABLE idempotency_keys (
    key          TEXT             PRIMARY KEY,
    request_hash BYTEA            NOT NULL,
    created_at   DOUBLE PRECISION NOT NULL,
    stream_id    TEXT             NOT NULL,
    version      BIGINT           NOT NULL,
    position     BIGINT           NOT NULL,
    status       INTEGER,
    body         BYTEA
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
CREATE TABLE schema_version (
    single  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (single),
    version INTEGER NOT NULL
);
CREATE TABLE aggregate_ids (kind TEXT PRIMARY KEY, last BIGINT NOT NULL);
CREATE TABLE leases (
    kind         TEXT        NOT NULL,
    aggregate_id BIGINT      NOT NULL,
    holder       TEXT        NOT NULL,
    epoch        BIGINT      NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, aggregate_id)
);
CREATE INDEX leases_by_holder ON leases (holder);
CREATE TABLE processes (
    holder     TEXT        PRIMARY KEY,
    host       TEXT        NOT NULL,
    pid        INTEGER     NOT NULL,
    tasks      TEXT[]      NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    seen_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO schema_version (version) VALUES (3);
"""

_COLUMNS = "position, stream_id, version, type, data, metadata, recorded_at, schema_version, hash"


async def make_schema_3(url: str, schema: str) -> None:
    """Create `schema` in the database at `url` with the tables of event schema 3."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE SCHEMA {quote_ident(schema)}")
        await conn.execute(f"SET search_path = {quote_ident(schema)}")
        await conn.execute(SCHEMA_3)
    finally:
        await conn.close()


async def insert_as_schema_3(conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
    """Store `events` as that release did: each field as the text the chain hashes."""
    await conn.executemany(
        f"INSERT INTO events ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [(*event.stored_fields().values(), event.hash) for event in events],
    )
