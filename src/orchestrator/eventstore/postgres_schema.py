"""The PostgreSQL log's schema: its tables and triggers, the schema version and its migrations.

The chain hash covers the text of each event's payload, metadata and time, so what is stored must
give that text back byte for byte: schema 3 stored the text itself (TEXT, not JSONB, which would
normalise the JSON; the time as its ISO text, not a timestamp, which would reformat it). Schema 4
stores compact forms that rebuild it (type and metadata as ids, the payload deflated, the time as
microseconds, the hash as bytes: postgres_codec.py), beside nullable text columns for the rows
written before and for values with no exact compact form.

Append-only is the database's rule, not only ours: one statement-level trigger refuses UPDATE,
DELETE and TRUNCATE on `events` and on each lookup table its rows refer to (statement-level, so an
UPDATE matching no row, and an `INSERT ... ON CONFLICT DO UPDATE`, are refused too). A superuser,
or the table's owner, can still disable triggers: the hash chain and the head checkpoints are
what catch that.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from orchestrator.eventstore.base import NewEvent, encode_for_storage
from orchestrator.eventstore.chain import GENESIS
from orchestrator.eventstore.errors import InvalidEvent, SchemaTooNew, StoreUnavailable
from orchestrator.eventstore.group_commit import EncodedEvents
from orchestrator.eventstore.postgres_codec import HASH_HEX
from orchestrator.eventstore.postgres_connection import PostgresDatabase

#: The version of the tables below, kept in `schema_version` (SQLite keeps its own in
#: user_version, numbered apart). 1: events with schema_version and hash, idempotency_keys;
#: 2: aggregate ids; 3: leases; 4: compact rows (postgres_codec.py) and their lookup tables.
SCHEMA_VERSION = 4

#: Each field of an event is in exactly one of its two columns (postgres_codec.py).
_ONE_FORM = """CHECK (
        (type_id IS NULL) <> (type IS NULL)
        AND (packed IS NULL) <> (data IS NULL)
        AND (metadata_id IS NULL) <> (metadata IS NULL)
        AND (recorded_us IS NULL) <> (recorded_at IS NULL)
        AND (digest IS NULL) <> (hash IS NULL)
    )"""

#: Rows appended from now on name their type by id. A process of the release before schema 4
#: that is still running when another migrates the log would append rows of text only, chained
#: on the hash it reads from the last row (NULL in a compact row): the chain would break for
#: good. Such an append is refused instead (NOT VALID in the migration: the old rows name their
#: type as text, and are not checked).
_TYPE_BY_ID = "CHECK (type_id IS NOT NULL)"

#: The tables compact rows refer to. Like the log they only grow, and the same trigger refuses
#: any other change: an edit would change what old events read as (which `verify` would catch,
#: as it hashes what it reads). Ids are handed out under the append lock (postgres_codec.py);
#: a metadata text may be new at every command (an idempotency key is part of it): BIGINT.
_LOOKUP_TABLES = """
CREATE TABLE event_types (
    id   INTEGER PRIMARY KEY,
    name TEXT    NOT NULL UNIQUE
);
CREATE TABLE event_metadata (
    id       BIGINT PRIMARY KEY,
    metadata TEXT   NOT NULL
);
CREATE TABLE event_dictionaries (
    id         SMALLINT PRIMARY KEY CHECK (id BETWEEN 1 AND 255),
    dictionary BYTEA    NOT NULL
);
CREATE TRIGGER event_types_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON event_types
    FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_append_only();
CREATE TRIGGER event_metadata_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON event_metadata
    FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_append_only();
CREATE TRIGGER event_dictionaries_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON event_dictionaries
    FOR EACH STATEMENT EXECUTE FUNCTION orchestrator_append_only();
"""

#: What each version adds to the one before it, to bring an older log up to this one (a new log
#: is made as _SCHEMA, at this version).
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
    # Compact rows (postgres_codec.py). The old rows stay as they are, in the text columns, so
    # nothing is rewritten: no column gets a default and the CHECK is not run over the old rows
    # (NOT VALID: they hold every text column and no compact one, which it would accept), so
    # the migration takes no longer on a long log than on an empty one.
    4: f"""
ALTER TABLE events
    ALTER COLUMN type DROP NOT NULL,
    ALTER COLUMN data DROP NOT NULL,
    ALTER COLUMN metadata DROP NOT NULL,
    ALTER COLUMN recorded_at DROP NOT NULL,
    ALTER COLUMN hash DROP NOT NULL,
    ADD COLUMN recorded_us BIGINT,
    ADD COLUMN type_id INTEGER,
    ADD COLUMN metadata_id BIGINT,
    ADD COLUMN packed BYTEA,
    ADD COLUMN digest BYTEA,
    ADD CONSTRAINT events_one_form {_ONE_FORM} NOT VALID,
    ADD CONSTRAINT events_type_by_id {_TYPE_BY_ID} NOT VALID;
{_LOOKUP_TABLES}
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

#: A new log, at SCHEMA_VERSION. The events' columns are in the order that packs a compact row
#: tightest (the fixed-width ones first, widest first; a log migrated from schema 3 has the new
#: columns at the end, a few bytes a row more).
_SCHEMA = f"""
CREATE TABLE events (
    position       BIGINT  PRIMARY KEY CHECK (position >= 1),
    version        BIGINT  NOT NULL CHECK (version >= 1),
    recorded_us    BIGINT,
    metadata_id    BIGINT,
    schema_version INTEGER NOT NULL DEFAULT 1,
    type_id        INTEGER,
    stream_id      TEXT    NOT NULL,
    packed         BYTEA,
    digest         BYTEA,
    type           TEXT,
    data           TEXT,
    metadata       TEXT,
    recorded_at    TEXT,
    hash           TEXT,
    CONSTRAINT events_stream_version UNIQUE (stream_id, version),
    CONSTRAINT events_one_form {_ONE_FORM},
    CONSTRAINT events_type_by_id {_TYPE_BY_ID}
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
{_MIGRATIONS[2]};
{_MIGRATIONS[3]}
{_LOOKUP_TABLES}
"""

#: (type, data, metadata, schema version) of each event, as stored.
Encoded = EncodedEvents


def refuse_nul(type_: str, data: str, which: str) -> None:
    """InvalidEvent if the type or payload holds a NUL: PostgreSQL text cannot (SQLite can), and
    whether a payload is stored as text or deflated depends on its size, so it is refused
    whatever its size (`which` names the event in the message)."""
    if "\x00" in data or "\x00" in type_:
        raise InvalidEvent(f"{which} cannot be stored: it holds a NUL character")


def encode_events(events: Sequence[NewEvent]) -> Encoded:
    """The events as stored text; InvalidEvent (before anything is queued) if one cannot be."""
    rows: Encoded = []
    for event in events:
        data, metadata = encode_for_storage(event)
        refuse_nul(event.type, data, f"event {event.type!r}")  # alone, never in a batch
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
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", SCHEMA_VERSION)
            return
        for version in range(found + 1, SCHEMA_VERSION + 1):
            await conn.execute(_MIGRATIONS[version])
        await conn.execute("UPDATE schema_version SET version = $1", SCHEMA_VERSION)


async def _stored_version(conn: asyncpg.Connection) -> int:
    if not await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL"):
        return 0
    return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))


#: Each stream's version and the log's head with its hash, in one round trip. A stream's
#: version is its last event's, found through the (stream_id, version) index from the top: as
#: `MAX(version) ... WHERE stream_id = ANY(...) GROUP BY stream_id`, the plan PostgreSQL cached
#: for the statement while the table was young (a sequential scan) stayed in use as the log
#: grew (no ANALYZE yet in a new database's first minute), until it took 25 ms under the append
#: lock at 15,000 events (auto_explain), the slowest statement of the benchmark.
_VERSIONS_AND_HEAD = (
    "SELECT s.stream_id, (SELECT e.version FROM events e WHERE e.stream_id = s.stream_id "
    "ORDER BY e.version DESC LIMIT 1), NULL FROM unnest($1::text[]) AS s(stream_id) UNION ALL "
    f"(SELECT NULL, position, {HASH_HEX} FROM events ORDER BY position DESC LIMIT 1)"
)


async def versions_and_head(
    conn: asyncpg.Connection, stream_ids: Iterable[str]
) -> tuple[dict[str, int], int, str]:
    """The version of each of `stream_ids` that has events (a new stream is absent), and the
    last position with its chain hash ((0, GENESIS) for an empty log)."""
    versions: dict[str, int] = {}
    head, previous = 0, GENESIS
    for stream, value, last_hash in await conn.fetch(_VERSIONS_AND_HEAD, sorted(set(stream_ids))):
        if stream is None:
            head, previous = int(value), str(last_hash)
        elif value is not None:
            versions[stream] = int(value)
    return versions, head, previous


async def stream_version(conn: asyncpg.Connection, stream_id: str) -> int:
    """The stream's current version (0 for a new stream), from the top of its index."""
    found = await conn.fetchval(
        "SELECT version FROM events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1", stream_id
    )
    return 0 if found is None else int(found)
