"""The PostgreSQL log's schema: its tables and triggers, the schema version, row decoding.

The events table keeps what SQLite keeps, as text: the chain hash covers the stored text of the
payload, metadata and time, so they are stored byte for byte as hashed (TEXT, not JSONB, which
would normalise the JSON; the time as its ISO text, not a timestamp, which would reformat it).

Append-only is the database's rule, not only ours: one statement-level trigger refuses UPDATE,
DELETE and TRUNCATE on `events` (statement-level, so an UPDATE matching no row, and an
`INSERT ... ON CONFLICT DO UPDATE`, are refused too). A superuser, or the table's owner, can still
disable triggers: the hash chain and the head checkpoints are what catch that.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
import msgspec

from orchestrator.eventstore.base import NewEvent, RecordedEvent, encode_for_storage
from orchestrator.eventstore.chain import GENESIS
from orchestrator.eventstore.errors import InvalidEvent, SchemaTooNew, StoreUnavailable
from orchestrator.eventstore.group_commit import EncodedEvents
from orchestrator.eventstore.postgres_connection import PostgresDatabase

#: The version of the tables below, kept in `schema_version` (SQLite keeps its own in
#: user_version, numbered apart). 1: events with schema_version and hash, idempotency_keys.
SCHEMA_VERSION = 3
#: What each version adds to the one before it (version 1 is _SCHEMA).
_MIGRATIONS = {
    # Ids of new workflows and tasks, issued by the database so that processes sharing the log
    # never hand out the same one (see PostgresEventStore.next_id).
    2: "CREATE TABLE aggregate_ids (kind TEXT PRIMARY KEY, last BIGINT NOT NULL)",
    # Several processes on one log: who drives each in-flight aggregate, and who is alive
    # (see leases.py and postgres_leases.py).
    3: """
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
""",
}

#: Shared by every append-only table of the schema (events here, anchors in postgres_anchors).
APPEND_ONLY_FUNCTION = """
CREATE OR REPLACE FUNCTION orchestrator_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% are append-only: % refused', TG_TABLE_NAME, TG_OP;
END
$$;
"""

_SCHEMA = f"""
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
{APPEND_ONLY_FUNCTION}
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
"""

COLUMNS = "position, stream_id, version, type, data, metadata, recorded_at, schema_version, hash"
#: Many events in one statement (one round trip): each column as an array.
INSERT = (
    f"INSERT INTO events ({COLUMNS}) SELECT * FROM unnest("
    "$1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], "
    "$8::integer[], $9::text[])"
)
_metadata_decoder = msgspec.json.Decoder(dict)


def insert_args(rows: list[tuple[object, ...]]) -> list[list[object]]:
    """The arguments of INSERT for `rows` in COLUMNS order: one list per column."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * 9


#: (type, data, metadata, schema version) of each event, as stored.
Encoded = EncodedEvents


def encode_events(events: Sequence[NewEvent]) -> Encoded:
    """The events as stored text; InvalidEvent (before anything is queued) if one cannot be."""
    rows: Encoded = []
    for event in events:
        data, metadata = encode_for_storage(event)
        # PostgreSQL text cannot hold NUL (SQLite can): refused here, alone, never in a batch.
        if "\x00" in data or "\x00" in event.type:
            raise InvalidEvent(f"event {event.type!r} cannot be stored: it holds a NUL character")
        rows.append((event.type, data, metadata, event.schema_version))
    return rows


async def migrate(db: PostgresDatabase) -> None:
    """Create the tables in a new schema, or check an existing one; refuse a newer one.

    Serialised by a lock of the schema, so several processes starting at once create it once.
    """
    async with db.transaction("preparing the event schema") as conn:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", db.ddl_lock_key)
        found = await _stored_version(conn)
        if found > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{db.name} has event schema {found}; this release knows up to {SCHEMA_VERSION}"
            )
        if found == SCHEMA_VERSION:
            return
        if found == 0:
            if await conn.fetchval("SELECT to_regclass('events') IS NOT NULL"):
                raise StoreUnavailable(
                    f"{db.name} already has an events table that is not an orchestrator log (no "
                    "schema_version table); name another schema with ?schema=... in DATABASE_URL"
                )
            await conn.execute(_SCHEMA)
            await conn.execute("INSERT INTO schema_version (version) VALUES (1)")
            found = 1
        for version in range(found + 1, SCHEMA_VERSION + 1):
            await conn.execute(_MIGRATIONS[version])
        await conn.execute("UPDATE schema_version SET version = $1", SCHEMA_VERSION)


async def _stored_version(conn: asyncpg.Connection) -> int:
    if not await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL"):
        return 0
    return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))


async def head_and_hash(conn: asyncpg.Connection) -> tuple[int, str]:
    """The last position and its chain hash ((0, GENESIS) for an empty log)."""
    row = await conn.fetchrow("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1")
    return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))


async def stream_version(conn: asyncpg.Connection, stream_id: str) -> int:
    """The stream's current version (0 for a new stream)."""
    found = await conn.fetchval(
        "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = $1", stream_id
    )
    return int(found)


def record_to_event(row: asyncpg.Record) -> RecordedEvent:
    """A stored row (in COLUMNS order) as an event."""
    position, stream_id, version, type_, data, metadata, recorded_at, schema, hash_ = row
    return RecordedEvent(
        position=position,
        stream_id=stream_id,
        version=version,
        type=type_,
        data=data.encode(),
        metadata=_metadata_decoder.decode(metadata),
        recorded_at=datetime.fromisoformat(recorded_at),
        schema_version=schema,
        hash=hash_,
    )
