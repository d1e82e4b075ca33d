"""The read-model tables of the in-memory backend, for rebuild and `--check` (see `tables.py`).

Nothing here awaits between reading the log's head and swapping, so nothing can be appended in
between: on one event loop that is what a transaction is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from orchestrator.eventstore.base import EventStore
from orchestrator.projections.storage import InMemoryProjectionStorage
from orchestrator.projections.tables import LIVE, FoldedHere, StoredRow


class InMemoryTablesSnapshot:
    """A copy of one set of tables, taken when the snapshot began."""

    def __init__(self, storage: InMemoryProjectionStorage, counters: dict[str, int]) -> None:
        self._rows = storage.rows_in_order()
        self._counters = counters
        self._checkpoint = storage.checkpoint

    @property
    def checkpoint(self) -> int:
        """The position the copied tables reflected."""
        return self._checkpoint

    async def rows(self) -> AsyncIterator[StoredRow]:
        """The copied rows in (kind, id) order."""
        for row in self._rows:
            yield StoredRow(
                row.kind,
                row.id,
                row.status,
                row.parent_id,
                row.deleted,
                row.needs_engine,
                row.state.decode(),
            )

    async def counters(self) -> dict[str, int]:
        """The copied counters."""
        return dict(self._counters)


class InMemoryReadModelTables(FoldedHere):
    """Sets of in-memory read models by prefix, beside an in-memory log."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._sets: dict[str, InMemoryProjectionStorage] = {}

    def storage(self, prefix: str = LIVE) -> InMemoryProjectionStorage:
        """The set under `prefix` (the same object each time, as tables would be)."""
        return self._sets.setdefault(prefix, InMemoryProjectionStorage())

    async def drop(self, prefix: str) -> None:
        """Empty the set under `prefix`."""
        if prefix in self._sets:
            self._sets[prefix].clear()

    async def swap_in(self, prefix: str, rebuilt_to: int) -> bool:
        """Move the set under `prefix` into the live one if the head has not moved."""
        if await self._store.head_position() != rebuilt_to:
            return False
        self.storage(LIVE).take_over(self.storage(prefix))
        self.storage(prefix).clear()
        return True

    @asynccontextmanager
    async def snapshot(self, prefix: str) -> AsyncIterator[InMemoryTablesSnapshot]:
        """A copy of the set under `prefix`."""
        storage = self.storage(prefix)
        yield InMemoryTablesSnapshot(storage, await storage.load_counters())
