"""The compact form of stored events, apart from any database: what the SQLite log (event schema
3, sqlite_codec.py) and the PostgreSQL log (event schema 4, postgres_codec.py) store instead of
the text the chain hashes, and how that text is rebuilt byte for byte from it.

- a type or a metadata text: an id into a lookup table of the log (the tables are the backend's);
- a payload: one byte naming a preset dictionary (0: none) and the payload's UTF-8 bytes deflated
  with it; the dictionary is learned from the log's own first events (`build_dictionary`);
- a time: integer microseconds since 1970-01-01 UTC;
- a hash: the 32 bytes of the SHA-256, not 64 hex digits.

A value whose compact form would not give back the very same text (a payload that does not
shrink, a time that is not UTC, a hash that is not lowercase hex) is kept as text, and rows
written before a backend had the compact form hold nothing else: `RowCodec` reads either form of
each field, in rows shaped as (position, stream_id, version, type, data, metadata, recorded_at,
schema_version, hash), the form told apart by its Python type (an int id or a str name, bytes or
str, ...). Each backend turns its own rows into that shape.
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from orchestrator.eventstore.base import FoldingEvent, RecordedEvent
from orchestrator.eventstore.chain import ChainRow, hashed_payload, linked_head, linked_tail

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

    Lazily: a sample's deflated size shrinks as the dictionary grows (deflate being a heuristic,
    nearly always), so the size it had with a shorter dictionary is taken as a bound of the one
    it has now. Each round measures samples again from the largest bound down, and takes the
    first whose measure stays the largest: about a third of the deflates of measuring every
    sample each round (12 ms instead of 33 for 500 samples; this runs beside the writer on a
    server taking load, holding the interpreter's lock), and a dictionary that packs within a
    percent of the exhaustive choice (test_sqlite_compact_rows.py).
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
    primed = _deflater(dictionary)

    def deflated_size(raw: bytes) -> int:
        deflater = primed.copy()  # a copy of a set-up deflater costs less than a new one
        return len(deflater.compress(raw)) + len(deflater.flush())

    # (-size, index, length of the dictionary the size was measured with)
    bounds = [(-deflated_size(raw), index, 0) for index, raw in enumerate(candidates)]
    heapq.heapify(bounds)
    while bounds:
        negative, index, measured_with = heapq.heappop(bounds)
        chosen = candidates[index]
        if measured_with != len(dictionary):
            heapq.heappush(bounds, (-deflated_size(chosen), index, len(dictionary)))
            continue
        if -negative < _MIN_PACKED or len(dictionary) + len(chosen) > DICTIONARY_BYTES:
            break
        dictionary += chosen
        primed = _deflater(dictionary)
    return dictionary


def _deflater(dictionary: bytes) -> zlib._Compress:
    if dictionary:
        return zlib.compressobj(
            _LEVEL, zlib.DEFLATED, _WRITE_WBITS, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, dictionary
        )
    return zlib.compressobj(_LEVEL, zlib.DEFLATED, _WRITE_WBITS, _MEM_LEVEL)


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
        """A stored row (shaped as the module says) as an event; KeyError if it refers to an id not
        learnt yet."""
        return self.events((row,))[0]

    def events(self, rows: Iterable[Sequence[Any]]) -> list[RecordedEvent]:
        """Stored rows (shaped as the module says) as events; KeyError if one refers to an id
        not learnt yet. One loop for a page of rows: the lookups are bound once, and a time
        shared by the rows of one commit is converted once."""
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
        """Rows shaped (position, stream_id, version, type, data, None, schema_version) as what
        a fold needs of each event; KeyError if one refers to an id not learnt yet."""
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
        """Stored rows (shaped as the module says) as the chain reads them (`chain.ChainRow`): the
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
            head = linked_head(position, stream_id, version, name)
            found.append(
                (
                    position,
                    stream_id,
                    version,
                    name,
                    payload,
                    schema,
                    b"".join((head, hashed_payload(payload), tail)),  # linked_content(...)
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
        return linked_tail(meta, when, schema)

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


#: A dictionary for payloads is learned once the log holds this many events (either backend).
LEARN_AFTER = 500
#: How many of the last events a dictionary is learned from.
SAMPLE_EVENTS = 1000


def learned_dictionary(rows: Iterable[Sequence[Any]]) -> bytes | None:
    """A dictionary built from (type, data) rows of the last SAMPLE_EVENTS events (only those
    whose payload is stored as text count), None when they are too little to learn from.
    Tens of milliseconds of deflating: run it apart from the writer (sqlite.py, postgres.py)."""
    dictionary = build_dictionary((type_, data) for type_, data in rows if isinstance(data, str))
    return dictionary if len(dictionary) >= 2 * _MIN_PACKED else None
