"""The compact rows of the PostgreSQL log (event schema 4), and reading both forms.

Schema 3 stored every field as the text the chain hashes, about 460 bytes of table an event.
Schema 4 stores the compact forms of compact.py instead, each in a column of its own type beside
the text column that held the field before (PostgreSQL is typed: one column cannot hold an id
or a name, as SQLite's can):

| field    | compact column                            | text column              |
|----------|-------------------------------------------|--------------------------|
| type     | type_id INTEGER, an id of `event_types`   | type TEXT                |
| payload  | packed BYTEA: dictionary byte + deflate   | data TEXT                |
| metadata | metadata_id BIGINT, of `event_metadata`   | metadata TEXT            |
| time     | recorded_us BIGINT, microseconds (UTC)    | recorded_at TEXT         |
| hash     | digest BYTEA, the 32 bytes                | hash TEXT                |

Exactly one column of each pair is set (the table's CHECK `events_one_form`). The text column
holds the rows written before the migration (it adds the compact columns and leaves the old rows
as they are) and a value whose compact form would not give back the very same text: a payload
that does not shrink (before a dictionary is learned, most of them), a time that is not UTC, a
hash that is not lowercase hex. Reading rebuilds each field byte for byte (compact.RowCodec, on
the rows put in its shape by `shaped`), so the chain, `verify` and the anchors see the same text.

**Ids shared by processes.** Every insert into the lookup tables is made in an append
transaction, under the append lock, so one more than the highest id is never taken twice. A
process learns the ids it inserted only once their transaction commits (a rollback leaves it
knowing nothing that is not stored), and loads an id it meets and does not know (another
process's) when it reads it. A metadata text may be stored twice (by two processes, or after
the writer forgot it): harmless, as with SQLite.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import asyncpg

from orchestrator.eventstore.base import FoldingEvent, RecordedEvent
from orchestrator.eventstore.chain import ChainRow
from orchestrator.eventstore.compact import RowCodec, pack_hash, pack_time
from orchestrator.eventstore.errors import EventStoreError
from orchestrator.eventstore.postgres_connection import PostgresDatabase

T = TypeVar("T")

#: The columns an event is read from: each field's compact column beside its text column.
COLUMNS = (
    "position, stream_id, version, type_id, type, packed, data, metadata_id, metadata, "
    "recorded_us, recorded_at, schema_version, digest, hash"
)
#: What a fold reads of an event (no metadata, time or hash sent or decoded).
FOLDING_COLUMNS = "position, stream_id, version, type_id, type, packed, data, schema_version"
#: What an insert writes: COLUMNS but the type's and metadata's text, as a new row names both by
#: id (the table's `events_type_by_id` holds it to the type's).
INSERT_COLUMNS = (
    "position, stream_id, version, type_id, packed, data, metadata_id, recorded_us, "
    "recorded_at, schema_version, digest, hash"
)
#: Many events in one statement (one round trip): each column of INSERT_COLUMNS as an array.
INSERT = (
    f"INSERT INTO events ({INSERT_COLUMNS}) SELECT * FROM unnest($1::bigint[], $2::text[], "
    "$3::bigint[], $4::integer[], $5::bytea[], $6::text[], $7::bigint[], $8::bigint[], "
    "$9::text[], $10::integer[], $11::bytea[], $12::text[])"
)
#: The stored hash of an event as hex, whichever column holds it.
HASH_HEX = "COALESCE(encode(digest, 'hex'), hash)"
#: The payloads a dictionary is learned from: those of the last SAMPLE_EVENTS events stored as
#: text (compact.learned_dictionary skips the others).
SAMPLE_SQL = "SELECT type_id, data FROM events ORDER BY position DESC LIMIT $1"

# New lookups, numbered on from the highest id (see the module's docstring for why this is safe).
_INSERT_TYPES = (
    "INSERT INTO event_types (id, name) SELECT last.id + new.n, new.name "
    "FROM unnest($1::text[]) WITH ORDINALITY AS new(name, n), "
    "(SELECT COALESCE(MAX(id), 0) AS id FROM event_types) AS last RETURNING id, name"
)
_INSERT_METADATA = (
    "INSERT INTO event_metadata (id, metadata) SELECT last.id + new.n, new.metadata "
    "FROM unnest($1::text[]) WITH ORDINALITY AS new(metadata, n), "
    "(SELECT COALESCE(MAX(id), 0) AS id FROM event_metadata) AS last RETURNING id, metadata"
)
#: What each lookup table of ids is read with, in the order of compact.Lookups.
_LOOKUPS = (
    "SELECT id, name FROM event_types WHERE id = ANY($1::integer[])",
    "SELECT id, metadata FROM event_metadata WHERE id = ANY($1::bigint[])",
    "SELECT id, dictionary FROM event_dictionaries WHERE id = ANY($1::integer[])",
)
#: How often a read loads the lookups its rows need before it says one is not stored: the codec
#: bounds what it keeps of the metadata, so a commit of many new texts while the lookups were
#: loaded can make it forget some of them again (never for long).
_LOAD_ATTEMPTS = 3
#: How many of the latest metadata texts the writer knows at start (each one it does not know
#: is stored again when it is next appended).
_LATEST_METADATA = 256


# Reading ----------------------------------------------------------------------------------------


def shaped(rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Rows of COLUMNS in the shape compact.RowCodec reads: each field in whichever of its two
    columns holds it (an int or bytes for the compact form, a str for the text)."""
    return [
        (
            position,
            stream_id,
            version,
            type_id if type_id is not None else type_,
            packed if packed is not None else data,
            metadata_id if metadata_id is not None else metadata,
            micros if micros is not None else recorded_at,
            schema,
            digest if digest is not None else hash_,
        )
        for (
            position,
            stream_id,
            version,
            type_id,
            type_,
            packed,
            data,
            metadata_id,
            metadata,
            micros,
            recorded_at,
            schema,
            digest,
            hash_,
        ) in rows
    ]


def shaped_for_folding(rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Rows of FOLDING_COLUMNS in the shape RowCodec.folding reads."""
    return [
        (
            position,
            stream_id,
            version,
            type_id if type_id is not None else type_,
            packed if packed is not None else data,
            None,
            schema,
        )
        for position, stream_id, version, type_id, type_, packed, data, schema in rows
    ]


async def load_unknown(
    db: PostgresDatabase, codec: RowCodec, rows: Sequence[Sequence[Any]]
) -> None:
    """Load the lookups `rows` (shaped) refer to that `codec` does not know: ids another process
    stored since this one last looked."""
    missing = codec.unknown(rows)
    wanted = (missing.types, missing.metadata, missing.dictionaries)
    learners = (codec.learn_types, codec.learn_metadata, codec.learn_dictionaries)
    for sql, ids, learn in zip(_LOOKUPS, wanted, learners, strict=True):
        if ids:
            learn(await db.fetch("a read of the event lookups", sql, sorted(ids)))


def as_events(codec: RowCodec, rows: Sequence[Sequence[Any]]) -> list[RecordedEvent]:
    """Rows of COLUMNS as events (KeyError for an id `codec` does not know)."""
    return codec.events(shaped(rows))


def as_folding(codec: RowCodec, rows: Sequence[Sequence[Any]]) -> list[FoldingEvent]:
    """Rows of FOLDING_COLUMNS as what a fold needs of each event (KeyError for an id `codec`
    does not know): RowCodec.folding, without putting every row in its shape first (a rebuild
    reads the whole log so, and that was a fifth of its time)."""
    types = codec.types
    payload = codec.payload
    return [
        FoldingEvent(
            position=position,
            stream_id=stream_id,
            version=version,
            type=types[type_id] if type_id is not None else type_,
            data=payload(packed if packed is not None else data, position),
            schema_version=schema,
        )
        for position, stream_id, version, type_id, type_, packed, data, schema in rows
    ]


def as_chain_rows(codec: RowCodec, rows: Sequence[Sequence[Any]]) -> list[ChainRow]:
    """Rows of COLUMNS as the chain reads them (KeyError for an id `codec` does not know)."""
    return codec.chained(shaped(rows))


async def decoded(
    db: PostgresDatabase,
    codec: RowCodec,
    rows: Sequence[Sequence[Any]],
    decode: Callable[[RowCodec, Sequence[Sequence[Any]]], list[T]],
    shape: Callable[[Iterable[Sequence[Any]]], list[tuple[Any, ...]]] = shaped,
) -> list[T]:
    """`decode(codec, rows)` (`as_events`, `as_folding` or `as_chain_rows`), after loading the
    lookups the rows need that `codec` lacks (found in them once put in `shape`);
    EventStoreError if a row cannot be read (an id that is not stored, a payload that does not
    inflate, metadata that is not JSON)."""
    try:
        for _ in range(_LOAD_ATTEMPTS - 1):
            try:
                return decode(codec, rows)
            except KeyError:
                await load_unknown(db, codec, shape(rows))
        return decode(codec, rows)
    except KeyError as exc:
        raise EventStoreError(f"a stored event refers to {exc}, which is not stored") from exc
    except (zlib.error, ValueError, OverflowError, TypeError) as exc:
        raise EventStoreError(f"a stored event cannot be read: {exc}") from exc


async def chain_rows_of(
    db: PostgresDatabase, codec: RowCodec, rows: Sequence[Sequence[Any]]
) -> list[ChainRow]:
    """Rows of COLUMNS as the chain reads them (`as_chain_rows`). A row that cannot be read at all
    (an edited payload that no longer inflates, an id that is not stored) is handed on with an
    unreadable marker for its content, so `verify` reports it as a broken chain at its position
    instead of stopping there."""
    try:
        return await decoded(db, codec, rows, as_chain_rows)
    except EventStoreError:
        pass
    found: list[ChainRow] = []
    for row in shaped(rows):
        try:
            found.extend(codec.chained((row,)))
        except Exception as exc:  # whatever it is, the row is reported, not read
            position, stream_id, version, type_ = row[0], row[1], row[2], row[3]
            stored = row[8].hex() if isinstance(row[8], bytes) else str(row[8])
            unreadable = f"\x1funreadable: {type(exc).__name__}: {exc}".encode()
            found.append((position, stream_id, version, str(type_), b"", 0, unreadable, stored))
    return found


# Writing ----------------------------------------------------------------------------------------


class Assigned:
    """Lookup ids found or handed out in one append transaction, for the codec to learn once it
    has committed."""

    def __init__(self) -> None:
        self.types: dict[str, int] = {}
        self.metadata: dict[str, int] = {}

    def committed(self, codec: RowCodec) -> None:
        """The transaction committed: `codec` may use the ids from now on."""
        codec.learn_types((number, name) for name, number in self.types.items())
        for text, number in self.metadata.items():
            codec.remember_metadata(text, number)


async def _type_ids(
    conn: asyncpg.Connection, codec: RowCodec, names: Iterable[str], assigned: Assigned
) -> dict[str, int]:
    """The id of each type name, found or inserted in the transaction `conn` is in."""
    ids: dict[str, int] = {}
    missing: list[str] = []
    for name in set(names):
        number = codec.type_ids.get(name, assigned.types.get(name))
        if number is None:
            missing.append(name)
        else:
            ids[name] = number
    if missing:
        found = await conn.fetch(
            "SELECT id, name FROM event_types WHERE name = ANY($1::text[])", missing
        )
        new = sorted(set(missing) - {str(name) for _, name in found})
        if new:
            found = [*found, *await conn.fetch(_INSERT_TYPES, new)]
        for number, name in found:
            ids[str(name)] = assigned.types[str(name)] = int(number)
    return ids


async def _metadata_ids(
    conn: asyncpg.Connection, codec: RowCodec, texts: Iterable[str], assigned: Assigned
) -> dict[str, int]:
    """The id of each metadata text, known or inserted in the transaction `conn` is in."""
    ids: dict[str, int] = {}
    new: list[str] = []
    for text in texts:
        if text in ids:
            continue
        number = codec.metadata_ids.get(text, assigned.metadata.get(text))
        if number is None:
            new.append(text)
            ids[text] = 0  # numbered below
        else:
            ids[text] = number
    if new:
        for number, text in await conn.fetch(_INSERT_METADATA, new):
            ids[str(text)] = assigned.metadata[str(text)] = int(number)
    return ids


async def compact_columns(
    conn: asyncpg.Connection,
    codec: RowCodec,
    inserts: Sequence[Sequence[Any]],
    payloads: Sequence[str | bytes],
    assigned: Assigned,
) -> list[list[Any]]:
    """INSERT's arguments for the chain's `inserts` (position, stream_id, version, type, data,
    metadata, recorded_at, schema_version, hash: the text that is hashed), with `payloads`
    (their data as RowCodec.pack_payload stored it): one list per column of INSERT_COLUMNS.

    New type names and metadata texts are inserted into their tables here, in the transaction
    `conn` is in (under the append lock); their ids go to `assigned`, for the codec once the
    transaction has committed.
    """
    types = await _type_ids(conn, codec, (str(row[3]) for row in inserts), assigned)
    metadata = await _metadata_ids(conn, codec, (str(row[5]) for row in inserts), assigned)
    columns: list[list[Any]] = [[] for _ in range(12)]
    (
        positions,
        streams,
        versions,
        type_ids,
        packed,
        texts,
        metadata_ids,
        micros,
        times,
        schemas,
        digests,
        hashes,
    ) = columns
    stored_times: dict[str, int | str] = {}
    for row, payload in zip(inserts, payloads, strict=True):
        position, stream_id, version, type_, _, meta, recorded_at, schema, hash_ = row
        when = stored_times.get(recorded_at)
        if when is None:
            when = stored_times[recorded_at] = pack_time(recorded_at)
        digest = pack_hash(hash_)
        positions.append(position)
        streams.append(stream_id)
        versions.append(version)
        type_ids.append(types[type_])
        packed.append(payload if isinstance(payload, bytes) else None)
        texts.append(payload if isinstance(payload, str) else None)
        metadata_ids.append(metadata[meta])
        micros.append(when if isinstance(when, int) else None)
        times.append(when if isinstance(when, str) else None)
        schemas.append(schema)
        digests.append(digest if isinstance(digest, bytes) else None)
        hashes.append(digest if isinstance(digest, str) else None)
    return columns


# Lookups at start -------------------------------------------------------------------------------


async def prepare(conn: asyncpg.Connection, codec: RowCodec) -> None:
    """Load what the writer wants at hand: every type, the dictionaries, the latest metadata."""
    codec.learn_types(await conn.fetch("SELECT id, name FROM event_types"))
    codec.learn_dictionaries(await conn.fetch("SELECT id, dictionary FROM event_dictionaries"))
    latest = await conn.fetch(
        "SELECT id, metadata FROM event_metadata ORDER BY id DESC LIMIT $1", _LATEST_METADATA
    )
    for number, text in reversed(latest):
        codec.remember_metadata(str(text), int(number))
