"""Where the read models live: the storage contract and its in-memory implementation.

Each `save` stores rows, counter deltas and the checkpoint together, so after a crash the read
models and the position they reflect always agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec

from orchestrator.projections.models import Row


class ProjectionMoved(Exception):
    """The stored checkpoint is not where this projector left it; it must reload."""

    def __init__(self, expected: int, found: int) -> None:
        self.expected = expected
        self.found = found
        super().__init__(f"read models are at position {found}, expected {expected}")


@dataclass(frozen=True, kw_only=True)
class ListQuery:
    """Which rows a list read wants: kind, optional status, parent and name, a page."""

    kind: str
    status: str | None = None
    parent_id: int | None = None
    #: Only rows whose aggregate's `name` contains this, ignoring the case of ASCII letters
    #: (other characters match as written, on every backend alike).
    name: str | None = None
    skip: int = 0
    limit: int = 100
    #: Newest (highest id) first instead of oldest first.
    descending: bool = False


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """`text` with A-Z lowered and nothing else changed (what SQLite's LIKE ignores)."""
    return text.translate(_ASCII_LOWER)


def name_pattern(fragment: str) -> str:
    """A LIKE pattern (escape character `\\`) matching names that contain `fragment`, ASCII
    letters lowered: `%` and `_` in the fragment match only themselves."""
    escaped = fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{ascii_lower(escaped)}%"


class _Named(msgspec.Struct):
    """The one field of a stored aggregate a name search reads (the rest is skipped)."""

    name: str = ""


_named = msgspec.json.Decoder(_Named)


def has_name_containing(state: bytes, fragment: str) -> bool:
    """Whether the stored aggregate `state`'s name contains `fragment` (as ListQuery.name)."""
    return ascii_lower(fragment) in ascii_lower(_named.decode(state).name)


class ProjectionStorage(Protocol):
    """Durable home of the read models and their checkpoint."""

    async def open(self) -> None:
        """Connect and create the tables."""

    async def close(self) -> None:
        """Release the connection."""

    async def load_checkpoint(self) -> int:
        """The last log position applied (0 when nothing was)."""

    async def load_counters(self) -> dict[str, int]:
        """Counters by name (`workflow:COMPLETE`, ...)."""

    async def load_generation(self) -> int:
        """How many times the tables were swapped by a rebuild (0 for never)."""

    async def load_rows(self, kind: str, ids: Iterable[int]) -> dict[int, bytes]:
        """Stored states for these ids (deleted ones included); missing ids are left out."""

    async def save(
        self,
        rows: Sequence[Row],
        counter_deltas: Mapping[str, int],
        position: int,
        expected_checkpoint: int,
        expected_generation: int = 0,
    ) -> None:
        """Store rows, add the deltas to the counters and move the checkpoint, atomically.

        Raises ProjectionMoved, storing nothing, if the stored checkpoint or generation is not
        the expected one (a rebuild swapped the tables, or another projector wrote).
        """

    async def list_rows(self, query: ListQuery) -> list[bytes]:
        """States of non-deleted rows matching `query`, in id order (descending if asked)."""

    async def ids_needing_engine(self, kind: str) -> list[int]:
        """Ids the engine must resume after a restart."""

    async def max_id(self, kind: str) -> int:
        """The highest id of this kind ever projected (deleted ones included), 0 if none."""


class InMemoryProjectionStorage:
    """Read models in dicts: for tests and the in-memory event store."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, int], Row] = {}
        self._counters: dict[str, int] = {}
        self._checkpoint = 0
        self._generation = 0

    async def open(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to release."""

    async def load_checkpoint(self) -> int:
        """The last applied position."""
        return self._checkpoint

    async def load_counters(self) -> dict[str, int]:
        """Counters by name."""
        return dict(self._counters)

    async def load_generation(self) -> int:
        """How many times a rebuild swapped other contents in."""
        return self._generation

    async def load_rows(self, kind: str, ids: Iterable[int]) -> dict[int, bytes]:
        """Stored states for these ids."""
        found = ((i, self._rows.get((kind, i))) for i in ids)
        return {i: row.state for i, row in found if row is not None}

    async def save(
        self,
        rows: Sequence[Row],
        counter_deltas: Mapping[str, int],
        position: int,
        expected_checkpoint: int,
        expected_generation: int = 0,
    ) -> None:
        """Store everything at once (nothing can interleave: no await inside)."""
        if self._checkpoint != expected_checkpoint or self._generation != expected_generation:
            raise ProjectionMoved(expected_checkpoint, self._checkpoint)
        for row in rows:
            self._rows[(row.kind, row.id)] = row
        for name, delta in counter_deltas.items():
            self._counters[name] = self._counters.get(name, 0) + delta
        self._checkpoint = position

    async def list_rows(self, query: ListQuery) -> list[bytes]:
        """Matching rows in id order."""
        matching = sorted(
            (
                row
                for (kind, _), row in self._rows.items()
                if kind == query.kind
                and not row.deleted
                and (query.status is None or row.status == query.status)
                and (query.parent_id is None or row.parent_id == query.parent_id)
                and (query.name is None or has_name_containing(row.state, query.name))
            ),
            key=lambda row: row.id,
            reverse=query.descending,
        )
        return [row.state for row in matching[query.skip : query.skip + query.limit]]

    async def ids_needing_engine(self, kind: str) -> list[int]:
        """Ids the engine must resume."""
        return sorted(i for (k, i), row in self._rows.items() if k == kind and row.needs_engine)

    async def max_id(self, kind: str) -> int:
        """Highest id seen."""
        return max((i for (k, i) in self._rows if k == kind), default=0)

    def take_over(self, rebuilt: InMemoryProjectionStorage) -> None:
        """Hold what `rebuilt` holds from now on, as a new generation (a rebuild's swap).

        In place, not by replacing the object: a running projector keeps this storage.
        """
        self._rows = dict(rebuilt._rows)
        self._counters = dict(rebuilt._counters)
        self._checkpoint = rebuilt._checkpoint
        self._generation += 1

    def clear(self) -> None:
        """Hold nothing, as freshly made (a dropped set of tables)."""
        self._rows.clear()
        self._counters.clear()
        self._checkpoint = 0

    def rows_in_order(self) -> list[Row]:
        """Every row, deleted ones included, in (kind, id) order."""
        return [self._rows[key] for key in sorted(self._rows)]

    @property
    def checkpoint(self) -> int:
        """The last applied position."""
        return self._checkpoint
