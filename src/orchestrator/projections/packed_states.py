"""How the read-model tables (SQLite's and PostgreSQL's) store a row's state.

A row holds its aggregate's whole state as JSON (`models.py`), a kilobyte and a half for a
finished workflow, mostly the same keys and values as every other row of its kind. While the
aggregate is in flight (the engine still drives it) its row is rewritten at every batch and read
through the projector's cache: it stays JSON text, as it costs nothing to write. Once it has
settled, it is stored deflated with a preset dictionary, the first settled state of its kind,
which takes a finished workflow from about 1,500 bytes to about 100 (and reads a page of rows
faster than the text did: fewer pages, no overflow pages).

A packed state is binary: the dictionary's id (4 bytes, big-endian: the first bytes of the
dictionary's SHA-256, so an id names the same dictionary in every set of tables and a cached
dictionary can never be stale after a rebuild swapped the tables) and the raw deflate stream. The
dictionaries live in the `dictionaries` table beside the rows; each transaction that stores a row
packed with one inserts it too, if missing, so a row never outlives its dictionary.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from orchestrator.projections.models import Row

#: 1: settled states deflated with a dictionary of their kind (before: every state JSON text).
#: Each backend keeps it in a row of its checkpoints table; tables of another encoding are
#: dropped at open and rebuilt from the log.
ENCODING = 1

_WBITS = -15
_LEVEL = 6
_MEM_LEVEL = 4
_ID_BYTES = 4
#: The largest state a kind's dictionary is taken from: deflate looks back 32 KiB at most, so
#: more would be stored (and, on PostgreSQL, sent with every save) for nothing. A state past it
#: (a config near the request limit) is stored as it is and waits for a smaller one.
MAX_DICTIONARY = 32 * 1024


class _Named(msgspec.Struct):
    """The one field of a state that name searches read (the rest is skipped)."""

    name: str = ""


_named = msgspec.json.Decoder(_Named)


def name_of(state: bytes) -> str:
    """The aggregate's `name` ("" for kinds without one), kept in a column of its own so a
    search by name needs no state unpacked."""
    return _named.decode(state).name


def dictionary_id(dictionary: bytes) -> int:
    """The id a dictionary is stored and referred to under."""
    return int.from_bytes(hashlib.sha256(dictionary).digest()[:_ID_BYTES], "big")


class StateCodec:
    """Packs settled states and unpacks stored ones; keeps the dictionaries it has seen.

    With `in_flight`, the states of aggregates still in flight are packed too, once their kind
    has a dictionary (PostgreSQL: each rewrite of a row leaves its old version behind until it is
    pruned, so the size of every version counts, not only the last one's).
    """

    def __init__(self, *, in_flight: bool = False) -> None:
        self._dictionaries: dict[int, bytes] = {}
        self._by_kind: dict[str, tuple[int, bytes]] = {}
        self._in_flight = in_flight

    def pack(self, row: Row) -> tuple[str | bytes, tuple[int, bytes] | None]:
        """The stored form of the row's state, and the dictionary (id, bytes) it was packed with
        (to store in the same transaction, under the row's kind), if it was."""
        found = self._by_kind.get(row.kind)
        if row.needs_engine and (found is None or not self._in_flight):
            # A kind's dictionary is always a settled state: it is what most rows end as.
            return row.state.decode(), None
        if found is None:
            if len(row.state) > MAX_DICTIONARY:
                return row.state.decode(), None
            found = (dictionary_id(row.state), row.state)
            self._by_kind[row.kind] = found
            self._dictionaries[found[0]] = row.state
        number, dictionary = found
        deflater = zlib.compressobj(
            _LEVEL, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY, dictionary
        )
        packed = number.to_bytes(_ID_BYTES, "big") + deflater.compress(row.state) + deflater.flush()
        if len(packed) >= len(row.state):
            return row.state.decode(), None
        return packed, found

    def unpack(self, stored: str | bytes) -> bytes:
        """A stored state as its JSON; KeyError if its dictionary was not learnt yet."""
        if isinstance(stored, str):
            return stored.encode()
        number = int.from_bytes(stored[:_ID_BYTES], "big")
        inflater = zlib.decompressobj(_WBITS, self._dictionaries[number])
        state = inflater.decompress(stored[_ID_BYTES:])
        if not inflater.eof:
            raise ValueError("a stored read-model state is cut short")
        return state

    def unknown(self, stored: Iterable[str | bytes]) -> list[int]:
        """The ids of the dictionaries these stored states need that are not known yet."""
        missing = {
            int.from_bytes(value[:_ID_BYTES], "big") for value in stored if isinstance(value, bytes)
        }
        return sorted(missing.difference(self._dictionaries))

    def learn(self, rows: Iterable[Sequence[Any]]) -> None:
        """Take in (id, kind, dictionary) rows of a dictionaries table (each checked against
        its id); a kind packs with the first of its dictionaries from now on."""
        for number, kind, dictionary in rows:
            raw = bytes(dictionary)
            if dictionary_id(raw) == int(number):
                self._dictionaries[int(number)] = raw
                self._by_kind.setdefault(str(kind), (int(number), raw))
