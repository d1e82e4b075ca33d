"""The compact form of the SQLite log's rows (event schema 3), and reading both forms.

Schema 2 stored every field as the text the chain hashes: the type's name, the JSON payload and
metadata, an ISO timestamp and a hex hash, repeated in full on every row. Schema 3 stores the
same fields in fewer bytes, and nothing that can be derived:

- `type`: an id in `event_types` (a handful of names, each stored once);
- `metadata`: an id in `event_metadata` (the few distinct texts, each stored once; a text the
  writer has not seen lately may be stored again, which is harmless);
- `data`: a BLOB, one byte naming a preset dictionary of `event_dictionaries` (0: none) and the
  payload's UTF-8 bytes deflated with it. The dictionary is learned once from the log's own
  first events (see `build_dictionary`), so this module knows no event's shape;
- `recorded_at`: INTEGER microseconds since 1970-01-01 UTC;
- `hash`: the 32 bytes of the SHA-256, not 64 hex digits.

Every column may also hold the schema-2 text: rows written before the migration kept nothing
else, and a value whose compact form would not give back the very same text (a payload that does
not shrink, a time that is not UTC, a hash that is not lowercase hex) is stored as text. Reading
rebuilds each field byte for byte, so the chain, `verify` and the head anchors see exactly the
fields they saw before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import aiosqlite

# The compact forms themselves, and the codec that reads either form, are not SQLite's own: they
# live in compact.py, shared with the PostgreSQL log. Imported here under their names, as the
# SQLite store, its schema and their tests have always imported them from this module.
from orchestrator.eventstore.compact import SAMPLE_EVENTS as SAMPLE_EVENTS
from orchestrator.eventstore.compact import RowCodec as RowCodec
from orchestrator.eventstore.compact import build_dictionary as build_dictionary
from orchestrator.eventstore.compact import learned_dictionary as learned_dictionary
from orchestrator.eventstore.compact import pack_hash as pack_hash
from orchestrator.eventstore.compact import pack_time as pack_time
from orchestrator.eventstore.compact import unpack_hash as unpack_hash
from orchestrator.eventstore.compact import unpack_time as unpack_time
from orchestrator.eventstore.errors import EventStoreError

#: The log's events in schema 3 (declared without types where a column holds either form: a
#: declared type would convert an id or a time into text, or a name that looks like a number
#: into an id).
EVENTS_TABLE = """CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY,
    stream_id   TEXT    NOT NULL,
    version     INTEGER NOT NULL CHECK (version >= 1),
    type        NOT NULL,
    data        NOT NULL,
    metadata    NOT NULL,
    recorded_at NOT NULL,
    schema_version INTEGER NOT NULL DEFAULT 1,
    hash        NOT NULL,
    UNIQUE (stream_id, version)
);"""

#: The columns `RowCodec.folding` reads, in the places `RowCodec.unknown` looks at (type and data
#: where COLUMNS has them; no metadata, so none of it is looked up).
FOLDING_COLUMNS = "position, stream_id, version, type, data, NULL, schema_version"

#: The tables the compact rows refer to. Like the log, they only grow: an edit would change what
#: old events read as (which `verify` would catch, as it re-hashes what it reads).
LOOKUP_TABLES = """
CREATE TABLE IF NOT EXISTS event_types (
    id   INTEGER PRIMARY KEY,
    name TEXT    NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS event_metadata (
    id       INTEGER PRIMARY KEY,
    metadata TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS event_dictionaries (
    id         INTEGER PRIMARY KEY CHECK (id BETWEEN 1 AND 255),
    dictionary BLOB    NOT NULL
);
CREATE TRIGGER IF NOT EXISTS event_types_refuse_change BEFORE UPDATE ON event_types
BEGIN SELECT RAISE(ABORT, 'event types are append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS event_types_refuse_delete BEFORE DELETE ON event_types
BEGIN SELECT RAISE(ABORT, 'event types are append-only: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS event_metadata_refuse_change BEFORE UPDATE ON event_metadata
BEGIN SELECT RAISE(ABORT, 'event metadata is append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS event_metadata_refuse_delete BEFORE DELETE ON event_metadata
BEGIN SELECT RAISE(ABORT, 'event metadata is append-only: DELETE refused'); END;
CREATE TRIGGER IF NOT EXISTS event_dictionaries_refuse_change BEFORE UPDATE ON event_dictionaries
BEGIN SELECT RAISE(ABORT, 'event dictionaries are append-only: UPDATE refused'); END;
CREATE TRIGGER IF NOT EXISTS event_dictionaries_refuse_delete BEFORE DELETE ON event_dictionaries
BEGIN SELECT RAISE(ABORT, 'event dictionaries are append-only: DELETE refused'); END;
"""

T = TypeVar("T")


# Against the database ---------------------------------------------------------------------------

_LOOKUPS = (
    ("event_types", "name"),
    ("event_metadata", "metadata"),
    ("event_dictionaries", "dictionary"),
)


def _learners(codec: RowCodec) -> tuple[Callable[[Iterable[Sequence[Any]]], None], ...]:
    return (codec.learn_types, codec.learn_metadata, codec.learn_dictionaries)


def _lookup_queries(
    codec: RowCodec, rows: Iterable[Sequence[Any]]
) -> list[tuple[str, list[int], Callable[[Iterable[Sequence[Any]]], None]]]:
    """The queries that load the lookups these rows refer to and `codec` lacks, each with its
    parameters and what takes its rows in."""
    missing = codec.unknown(rows)
    wanted = (missing.types, missing.metadata, missing.dictionaries)
    return [
        (
            f"SELECT id, {column} FROM {table} WHERE id IN ({','.join('?' * len(ids))})",
            sorted(ids),
            learn,
        )
        for (table, column), ids, learn in zip(_LOOKUPS, wanted, _learners(codec), strict=True)
        if ids
    ]


def decode_rows_now(
    conn: sqlite3.Connection,
    rows: Sequence[Sequence[Any]],
    decode: Callable[[Sequence[Sequence[Any]]], list[T]],
    codec: RowCodec,
) -> list[T]:
    """`decode(rows)` (a method of `codec`), loading the lookups the rows refer to that `codec`
    lacks through a plain sqlite3 connection, in the caller's thread."""
    try:
        return decode(rows)
    except KeyError:
        for sql, ids, learn in _lookup_queries(codec, rows):
            learn(conn.execute(sql, ids).fetchall())
        try:
            return decode(rows)
        except KeyError as exc:
            raise EventStoreError(f"a stored event refers to {exc}, which is not stored") from exc


def load_lookups(conn: sqlite3.Connection, codec: RowCodec) -> None:
    """Every lookup of the file at once, through a plain sqlite3 connection (tools, tests); a
    file of schema 2 has none."""
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    for (table, column), learn in zip(_LOOKUPS, _learners(codec), strict=True):
        if table in tables:
            learn(conn.execute(f"SELECT id, {column} FROM {table} ORDER BY id").fetchall())


async def prepare(conn: aiosqlite.Connection, codec: RowCodec) -> None:
    """Load what the writer wants at hand: every type, the dictionaries, the latest metadata."""
    codec.learn_types(await conn.execute_fetchall("SELECT id, name FROM event_types"))
    codec.learn_dictionaries(
        await conn.execute_fetchall("SELECT id, dictionary FROM event_dictionaries")
    )
    latest = await conn.execute_fetchall(
        "SELECT id, metadata FROM event_metadata ORDER BY id DESC LIMIT 256"
    )
    for number, text in reversed(list(latest)):
        codec.remember_metadata(str(text), int(number))


def compact_rows(
    conn: sqlite3.Connection,
    codec: RowCodec,
    inserts: Sequence[Sequence[Any]],
    payloads: Sequence[str | bytes],
) -> tuple[list[tuple[object, ...]], Callable[[], None]]:
    """The stored rows of the chain's `inserts` (position, stream_id, version, type, data,
    metadata, recorded_at, schema_version, hash: text, as hashed), with `payloads` (their data
    as `pack_payload` stored it); and what to call once the transaction has committed.

    New type names and metadata texts are inserted into their tables here, in the caller's
    transaction (on a plain sqlite3 connection: see `sqlite_schema.run_on`): the codec learns
    their ids only from the returned call, so a rollback leaves it knowing nothing that is not
    stored.
    """
    # The ids these rows need, looked up once: the codec's own tables may be changed by the
    # event loop's thread meanwhile (what another commit or a read learns), and this may run in
    # the writer's thread.
    known_types = codec.type_ids
    type_ids: dict[str, int] = {}
    new_types: list[str] = []
    for name in {row[3] for row in inserts}:
        number = known_types.get(name)
        if number is None:
            new_types.append(name)
        else:
            type_ids[name] = number
    for name in sorted(new_types):
        conn.execute("INSERT OR IGNORE INTO event_types (name) VALUES (?)", (name,))
        found = conn.execute("SELECT id FROM event_types WHERE name = ?", (name,)).fetchone()
        type_ids[name] = int(found[0])
    known_metadata = codec.metadata_ids
    metadata_ids: dict[str, int] = {}
    new_metadata: dict[str, int] = {}
    for row in inserts:
        text = row[5]
        if text not in metadata_ids and text not in new_metadata:
            number = known_metadata.get(text)
            if number is None:
                new_metadata[text] = 0
            else:
                metadata_ids[text] = number
    if new_metadata:
        found = conn.execute("SELECT COALESCE(MAX(id), 0) FROM event_metadata").fetchone()
        number = int(found[0])
        for text in new_metadata:
            number += 1
            new_metadata[text] = number
        conn.executemany(
            "INSERT INTO event_metadata (id, metadata) VALUES (?, ?)",
            [(number, text) for text, number in new_metadata.items()],
        )
        metadata_ids.update(new_metadata)
    times: dict[str, int | str] = {}
    rows: list[tuple[object, ...]] = []
    for row, payload in zip(inserts, payloads, strict=True):
        position, stream_id, version, type_, _, metadata, recorded_at, schema, hash_ = row
        when = times.get(recorded_at)
        if when is None:
            when = times[recorded_at] = pack_time(recorded_at)
        rows.append(
            (
                position,
                stream_id,
                version,
                type_ids[type_],
                payload,
                metadata_ids[metadata],
                when,
                schema,
                pack_hash(hash_),
            )
        )

    def committed() -> None:
        codec.learn_types((type_ids[name], name) for name in new_types)
        for text, number in new_metadata.items():
            codec.remember_metadata(text, number)

    return rows, committed


#: The payloads a dictionary is learned from: the newest SAMPLE_EVENTS stored as text.
SAMPLE_SQL = "SELECT type, data FROM events ORDER BY position DESC LIMIT ?"


def store_dictionary(dictionary: bytes, conn: sqlite3.Connection) -> list[tuple[int, bytes]]:
    """In a write transaction: the dictionaries already stored, if any (the first one learned
    wins), else `dictionary`, inserted as number 1; for the codec to learn once committed."""
    stored = conn.execute("SELECT id, dictionary FROM event_dictionaries").fetchall()
    if stored:
        return [(int(number), bytes(found)) for number, found in stored]
    conn.execute("INSERT INTO event_dictionaries (id, dictionary) VALUES (1, ?)", (dictionary,))
    return [(1, dictionary)]
