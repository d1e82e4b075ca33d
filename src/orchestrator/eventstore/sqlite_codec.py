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
import zlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiosqlite
import msgspec

from orchestrator.eventstore.base import FoldingEvent, RecordedEvent
from orchestrator.eventstore.chain import ChainRow, hashed_payload
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

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO = timedelta(0)
#: Deflate's settings for payloads: raw deflate streams, read with the largest window (32 KB),
#: so a stream written with any smaller one reads. They are written with a 4 KB window (enough
#: for the dictionary and a typical payload) and a small memory level, so a compressor is set up
#: in about 20 KB rather than 140 KB. Window, level and memory level of the writer may change
#: freely: they are not part of the stored form.
_WBITS = -15
_WRITE_WBITS = -12
_LEVEL = 6
_MEM_LEVEL = 2
#: Payloads shorter than this are stored as text: deflate cannot win much on them.
_MIN_PACKED = 24
#: A learned dictionary holds at most this much of the log's own payloads (a longer one costs
#: more to set up for each payload than it saves: 2 KB deflates a payload in about 5 us).
DICTIONARY_BYTES = 2048
#: A dictionary is chosen among this many distinct recent payloads, none longer than this.
_CANDIDATES = 500
_MAX_SAMPLE = 512
#: Bounds of the writer's and readers' lookups of metadata texts (a log whose metadata are all
#: different, as an import of the original's rows makes, must not fill memory with them).
_MAX_METADATA = 8192

T = TypeVar("T")
_metadata_decoder = msgspec.json.Decoder(dict)
_metadata_encoder = msgspec.json.Encoder()
_SCALARS = frozenset((str, int, float, bool, type(None)))


def pack_time(text: str) -> int | str:
    """The stored form of an ISO time: its microseconds since 1970 if that gives `text` back."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is None or moment.utcoffset() != _ZERO:
        return text
    delta = moment - EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros if unpack_time(micros).isoformat() == text else text


def unpack_time(value: int | str) -> datetime:
    """A stored time as a datetime."""
    if isinstance(value, int):
        return EPOCH + timedelta(microseconds=value)
    return datetime.fromisoformat(value)


def pack_hash(text: str) -> bytes | str:
    """The stored form of a hex hash: its bytes if that gives `text` back."""
    if len(text) != 64:
        return text
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return text
    return raw if raw.hex() == text else text


def unpack_hash(value: bytes | str) -> str:
    """A stored hash as hex."""
    return value.hex() if isinstance(value, bytes) else value


def _rehashed(text: str) -> bytes:
    """A metadata text as the chain hashes it: decoded, then encoded again (what
    `RecordedEvent.stored_fields` gives of the dict read from it)."""
    return _metadata_encoder.encode(_metadata_decoder.decode(text)).decode().encode()


def build_dictionary(samples: Iterable[tuple[object, str | bytes]]) -> bytes:
    """A preset dictionary from (type, payload) samples of the log, most recent first.

    Greedy: the sample that the dictionary so far compresses worst (the most novel one) goes in
    next, until DICTIONARY_BYTES are taken or every sample compresses well. So each kind of
    payload (a type, the outcome of each task, ...) is in it once, however often it occurs.
    """
    candidates: list[bytes] = []
    seen: set[bytes] = set()
    for _, payload in samples:
        raw = payload.encode() if isinstance(payload, str) else payload
        if len(raw) <= _MAX_SAMPLE and raw not in seen:
            seen.add(raw)
            candidates.append(raw)
            if len(candidates) >= _CANDIDATES:
                break
    dictionary = b""
    while candidates:
        sizes = [len(_deflate(raw, dictionary)) for raw in candidates]
        worst = max(range(len(candidates)), key=sizes.__getitem__)
        chosen = candidates.pop(worst)
        if sizes[worst] < _MIN_PACKED or len(dictionary) + len(chosen) > DICTIONARY_BYTES:
            break
        dictionary += chosen
    return dictionary


def _deflater(dictionary: bytes) -> zlib._Compress:
    if dictionary:
        return zlib.compressobj(
            _LEVEL, zlib.DEFLATED, _WRITE_WBITS, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, dictionary
        )
    return zlib.compressobj(_LEVEL, zlib.DEFLATED, _WRITE_WBITS, _MEM_LEVEL)


def _deflate(raw: bytes, dictionary: bytes) -> bytes:
    deflater = _deflater(dictionary)
    return deflater.compress(raw) + deflater.flush()


class Lookups(msgspec.Struct):
    """Ids that rows refer to and the reader does not know yet."""

    types: set[int]
    metadata: set[int]
    dictionaries: set[int]


class RowCodec:
    """Turns stored rows (either form) into events, and payloads into their stored form.

    It keeps the lookups it has seen: names of type ids, texts of metadata ids, dictionaries.
    Reading a row that refers to an id it does not know raises KeyError; `unknown` says which
    ids to load, and `learn_*` takes them in.
    """

    def __init__(self) -> None:
        self.types: dict[int, str] = {}
        self.type_ids: dict[str, int] = {}
        self.metadata: dict[int, str] = {}
        self.metadata_ids: dict[str, int] = {}
        self.dictionaries: dict[int, bytes] = {}
        #: The dictionary new payloads are deflated with (its id and bytes), once there is one.
        self.dictionary: tuple[int, bytes] | None = None
        self._last_time: tuple[object, datetime] = (None, EPOCH)
        #: Decoded metadata of ids whose values are all immutable (see `_decode_metadata`).
        self._flat: dict[int, dict[str, Any]] = {}
        #: Metadata texts of ids as the chain hashes them (see `chained`).
        self._hashed_metadata: dict[int, bytes] = {}
        #: A compressor set up with each dictionary, copied for each payload (`pack_payload`).
        self._deflaters: dict[int, zlib._Compress] = {}

    # Reading -------------------------------------------------------------------------------------

    def event(self, row: Sequence[Any]) -> RecordedEvent:
        """A stored row (in COLUMNS order) as an event; KeyError if it refers to an id not
        learnt yet."""
        return self.events((row,))[0]

    def events(self, rows: Iterable[Sequence[Any]]) -> list[RecordedEvent]:
        """Stored rows (in COLUMNS order) as events; KeyError if one refers to an id not learnt
        yet. One loop for a page of rows: the lookups are bound once, and a time shared by the
        rows of one commit is converted once."""
        types = self.types
        flat = self._flat
        last, moment = self._last_time
        found: list[RecordedEvent] = []
        for position, stream_id, version, type_, data, metadata, recorded_at, schema, hash_ in rows:
            if recorded_at != last or type(recorded_at) is not type(last):
                moment = unpack_time(recorded_at)
                last = recorded_at
                self._last_time = (last, moment)
            payload = self.payload(data, position)
            if type(metadata) is int:
                known = flat.get(metadata)
                decoded = known.copy() if known is not None else self._decode_metadata(metadata)
            else:
                decoded = _metadata_decoder.decode(metadata)
            found.append(
                RecordedEvent(
                    position=position,
                    stream_id=stream_id,
                    version=version,
                    type=types[type_] if type(type_) is int else type_,
                    data=payload,
                    metadata=decoded,
                    recorded_at=moment,
                    schema_version=schema,
                    hash=hash_.hex() if type(hash_) is bytes else hash_,
                )
            )
        return found

    def folding(self, rows: Iterable[Sequence[Any]]) -> list[FoldingEvent]:
        """Rows of FOLDING_COLUMNS as what a fold needs of each event; KeyError if one refers to
        an id not learnt yet."""
        types = self.types
        payload = self.payload
        return [
            FoldingEvent(
                position=position,
                stream_id=stream_id,
                version=version,
                type=types[type_] if type(type_) is int else type_,
                data=payload(data, position),
                schema_version=schema,
            )
            for position, stream_id, version, type_, data, _, schema in rows
        ]

    def chained(self, rows: Iterable[Sequence[Any]]) -> list[ChainRow]:
        """Stored rows (in COLUMNS order) as the chain reads them (`chain.ChainRow`): the
        fields a hash covers in their hashed form, without building events. What each row
        hashes is exactly what `event(row).stored_fields()` would: the metadata is its decoded
        JSON encoded again (once per metadata id), the time its datetime's ISO text. KeyError
        if a row refers to an id not learnt yet."""
        types = self.types
        last_time: object = None
        when = b""
        last_tail: object = None
        tail = b""
        found: list[ChainRow] = []
        for position, stream_id, version, type_, data, metadata, recorded_at, schema, hash_ in rows:
            if recorded_at != last_time or type(recorded_at) is not type(last_time):
                when = unpack_time(recorded_at).isoformat().encode()
                last_time = recorded_at
                last_tail = None
            payload = self.payload(data, position)
            # The rows of one commit share their time, metadata and schema, so the end of
            # `linked_content` they make is built once for all of them.
            tail_of = (metadata, type(metadata), schema)
            if tail_of != last_tail:
                tail = self._linked_tail(metadata, when, schema)
                last_tail = tail_of
            name = types[type_] if type(type_) is int else type_
            head = f"\x1f{position!s}\x1f{stream_id!s}\x1f{version!s}\x1f{name!s}\x1f".encode()
            hashed = payload if payload.isascii() else hashed_payload(payload)
            found.append(
                (
                    position,
                    stream_id,
                    version,
                    name,
                    payload,
                    schema,
                    b"".join((head, hashed, tail)),  # linked_content(...), byte for byte
                    hash_.hex() if type(hash_) is bytes else hash_,
                )
            )
        return found

    def _linked_tail(self, metadata: Any, when: bytes, schema: object) -> bytes:
        """What `linked_content` puts after the payload: the metadata as the chain hashes it
        (its decoded JSON encoded again, kept per metadata id), the time (`when`, its ISO
        text) and the schema version."""
        if type(metadata) is int:
            hashed = self._hashed_metadata
            meta = hashed.get(metadata)
            if meta is None:
                meta = _rehashed(self.metadata[metadata])
                if len(hashed) >= _MAX_METADATA:
                    hashed.clear()
                hashed[metadata] = meta
        else:
            meta = _rehashed(metadata)
        return b"".join((b"\x1f", meta, b"\x1f", when, f"\x1f{schema!s}".encode()))

    def _decode_metadata(self, number: int) -> dict[str, Any]:
        decoded: dict[str, Any] = _metadata_decoder.decode(self.metadata[number])
        if all(type(value) in _SCALARS for value in decoded.values()):
            # Each event gets a copy of its own: a shallow one will do, nothing in it is mutable.
            self._flat[number] = decoded.copy()
        return decoded

    def payload(self, data: str | bytes, position: int | None = None) -> bytes:
        """A stored payload (of the event at `position`, for the error) as the bytes that were
        appended."""
        if isinstance(data, str):
            return data.encode()
        number = data[0]
        inflater = (
            zlib.decompressobj(_WBITS, self.dictionaries[number])
            if number
            else zlib.decompressobj(_WBITS)
        )
        raw = inflater.decompress(data[1:])
        if not inflater.eof:
            which = "a stored payload" if position is None else f"the payload of event {position}"
            raise ValueError(f"{which} is cut short")
        return raw

    def unknown(self, rows: Iterable[Sequence[Any]]) -> Lookups:
        """The ids these rows refer to that this codec does not know."""
        found = Lookups(set(), set(), set())
        for row in rows:
            type_, data, metadata = row[3], row[4], row[5]
            if type(type_) is int and type_ not in self.types:
                found.types.add(type_)
            if type(metadata) is int and metadata not in self.metadata:
                found.metadata.add(metadata)
            if type(data) is bytes and data[:1] != b"\x00" and data[0] not in self.dictionaries:
                found.dictionaries.add(data[0])
        return found

    def learn_types(self, rows: Iterable[Sequence[Any]]) -> None:
        """Take in (id, name) rows of `event_types`."""
        for number, name in rows:
            self.types[int(number)] = str(name)
            self.type_ids[str(name)] = int(number)

    def learn_metadata(self, rows: Iterable[Sequence[Any]]) -> None:
        """Take in (id, text) rows of `event_metadata`."""
        if len(self.metadata) > _MAX_METADATA:
            self.metadata.clear()
            self._flat.clear()
            self._hashed_metadata.clear()
        for number, text in rows:
            self.metadata[int(number)] = str(text)

    def learn_dictionaries(self, rows: Iterable[Sequence[Any]]) -> None:
        """Take in (id, bytes) rows of `event_dictionaries`; the newest one packs from now on."""
        for number, dictionary in rows:
            self.dictionaries[int(number)] = bytes(dictionary)
            if self.dictionary is None or int(number) > self.dictionary[0]:
                self.dictionary = (int(number), bytes(dictionary))

    # Writing -------------------------------------------------------------------------------------

    def pack_payload(self, text: str) -> str | bytes:
        """The stored form of a payload: deflated with the current dictionary if that is
        shorter, else the text itself."""
        found = self.dictionary
        if found is None or len(text) < _MIN_PACKED:
            return text
        number, dictionary = found
        primed = self._deflaters.get(number)
        if primed is None:
            # Setting a dictionary up costs more than deflating a payload with it: it is set up
            # once, and each payload deflates with a copy (the same stream a new one gives).
            primed = self._deflaters[number] = _deflater(dictionary)
        raw = text.encode()
        deflater = primed.copy()
        packed = bytes((number,)) + deflater.compress(raw) + deflater.flush()
        return packed if len(packed) < len(raw) else text

    def remember_metadata(self, text: str, number: int) -> None:
        """Keep a metadata text's id for the writer (and its text for readers)."""
        if len(self.metadata_ids) >= _MAX_METADATA:
            self.metadata_ids.clear()
        self.metadata_ids[text] = number
        self.learn_metadata([(number, text)])


# Against the database ---------------------------------------------------------------------------

_LOOKUPS = (
    ("event_types", "name"),
    ("event_metadata", "metadata"),
    ("event_dictionaries", "dictionary"),
)
#: How many of the last events a dictionary is learned from.
SAMPLE_EVENTS = 1000


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


def learned_dictionary(rows: Iterable[Sequence[Any]]) -> bytes | None:
    """A dictionary built from SAMPLE_SQL's rows, None when they are too little to learn from.
    Tens of milliseconds of deflating: run it apart from the writer (sqlite.py)."""
    dictionary = build_dictionary((type_, data) for type_, data in rows if isinstance(data, str))
    return dictionary if len(dictionary) >= 2 * _MIN_PACKED else None


def store_dictionary(dictionary: bytes, conn: sqlite3.Connection) -> list[tuple[int, bytes]]:
    """In a write transaction: the dictionaries already stored, if any (the first one learned
    wins), else `dictionary`, inserted as number 1; for the codec to learn once committed."""
    stored = conn.execute("SELECT id, dictionary FROM event_dictionaries").fetchall()
    if stored:
        return [(int(number), bytes(found)) for number, found in stored]
    conn.execute("INSERT INTO event_dictionaries (id, dictionary) VALUES (1, ?)", (dictionary,))
    return [(1, dictionary)]
