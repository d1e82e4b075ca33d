"""A backend's read models as sets of tables under a prefix: what a rebuild and `--check` need.

A projection storage (`storage.py`) is one set of tables: the live set serves reads. A rebuild
fills a fresh set beside it and swaps it in; `--check` compares a fresh set with a snapshot of
the live one. Each backend says how, in its own transactions (SQLite: `sqlite_tables.py`; memory:
`memory_tables.py`), so `rebuild.py` is written once for all of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, NamedTuple, Protocol

from orchestrator.projections.storage import ProjectionStorage

#: The prefix of the live tables, the ones a running server reads and writes.
LIVE = "projection_"

# The rows of every backend's checkpoints table (name -> position).
#: The row of the checkpoints table holding the last log position applied.
CHECKPOINT = "read_models"
#: The row of the checkpoints table counting rebuild swaps (its `position` is the count).
GENERATION = "generation"
#: The row of the checkpoints table holding READ_MODEL_FORMAT (in its `position` column).
FORMAT = "format"
#: The shape of the stored aggregates. Raise it when an aggregate gains a field that older rows
#: lack (2: a workflow's `created_at`, transition versions and task names; a task's `in_run`):
#: read models of another format are dropped at open and rebuilt from the log, which they can
#: always be, rather than showing old rows without the new fields.
READ_MODEL_FORMAT = 2


class StoredRow(NamedTuple):
    """One read-model row as a snapshot yields it (the position it was saved at left out: that
    depends on batch boundaries, not on content)."""

    kind: str
    id: int
    status: str
    parent_id: int | None
    deleted: bool
    needs_engine: bool
    state: str

    @classmethod
    def of(cls, columns: Sequence[Any]) -> StoredRow:
        """A row from its columns as a driver returns them (kind, id, status, parent_id,
        deleted, needs_engine, state)."""
        kind, id_, status, parent, deleted, needs_engine, state = columns
        return cls(
            str(kind),
            int(id_),
            str(status),
            None if parent is None else int(parent),
            bool(deleted),
            bool(needs_engine),
            str(state),
        )


class TablesSnapshot(Protocol):
    """One set of tables as of one moment, however far writers move on meanwhile."""

    @property
    def checkpoint(self) -> int:
        """The log position these tables reflect."""

    def rows(self) -> AsyncIterator[StoredRow]:
        """Every row, in (kind, id) order, streamed: memory stays flat however many there are."""

    async def counters(self) -> dict[str, int]:
        """Counters by name."""


class ReadModelTables(Protocol):
    """Sets of read-model tables of one backend, each under a prefix."""

    def storage(self, prefix: str = LIVE) -> ProjectionStorage:
        """A projection storage over the tables under `prefix` (to be opened, which creates
        them if missing)."""

    async def prefill(
        self,
        prefix: str,
        until: int,
        processes: int | None,
        progress: Callable[[int], None] | None,
    ) -> int:
        """Fill the new, empty tables under `prefix` with the read models of the log's events
        up to `until`, folded by several processes at once where the backend can (a SQLite log
        of part_processes.PROCESSES_FROM events or more, or `processes` of them), with their
        checkpoint at `until`; the position filled to (0: nothing, the projector folds all)."""

    async def drop(self, prefix: str) -> None:
        """Remove the tables under `prefix` and everything in them."""

    async def swap_in(self, prefix: str, rebuilt_to: int) -> bool:
        """Make the tables under `prefix` the live ones, atomically, and count a new generation
        (so running projectors reload), only if the log's head is still `rebuilt_to`.

        False, changing nothing, if an event was appended since: catch up, then try again.
        """

    def snapshot(self, prefix: str) -> AbstractAsyncContextManager[TablesSnapshot]:
        """The tables under `prefix` as of now, readable until the context ends."""


class FoldedHere:
    """Read-model tables of a backend whose rebuilds fold every event in the rebuild's own
    process (no scratch tables of parts to merge: PostgreSQL, memory)."""

    async def prefill(
        self,
        prefix: str,
        until: int,
        processes: int | None,
        progress: Callable[[int], None] | None,
    ) -> int:
        """Nothing (ReadModelTables.prefill): the rebuild's projector folds every event."""
        return 0
