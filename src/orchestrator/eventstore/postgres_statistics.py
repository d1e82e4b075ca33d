"""Fresh planner statistics for tables that are still growing fast (PostgreSQL).

asyncpg prepares each statement once per connection, and after a few executions PostgreSQL plans
it once for all parameters (a generic plan), with the statistics of that moment. In a new
database that moment is when a table holds a few rows: a sequential scan is the cheapest plan
then, and it stays in use as the table grows, since nothing invalidates it until the table is
analyzed, which autovacuum does a minute later at the earliest (its naptime). Measured with
auto_explain at 15,000 events: an append's version check (under the append lock) and the
projector's row lookups scanned every row, 25 ms and 4 ms where an index lookup takes 0.15.

So a process analyzes the tables it writes whenever they have grown fourfold since it last did
(from a thousand rows on): a few times in a new database's first minutes, rarely after. An
ANALYZE reads a sample (30,000 rows at most) in a connection of the pool, beside the writer,
and makes every connection plan its statements anew.
"""

from __future__ import annotations

import asyncio
import logging

from orchestrator.eventstore.postgres_connection import PostgresDatabase
from orchestrator.stopping import stop_tasks

log = logging.getLogger(__name__)

#: The size at which a table is first analyzed, and how much it grows before the next time.
FIRST = 1000
GROWTH = 4


class GrowingTables:
    """Analyzes `tables` each time the size they track grows past the next threshold."""

    def __init__(self, db: PostgresDatabase, tables: tuple[str, ...]) -> None:
        self._db = db
        self._tables = tables
        self._next = FIRST
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start_at(self, size: int) -> None:
        """The tables hold about `size` rows now (as analyzed by autovacuum, or empty)."""
        self._next = max(FIRST, size * GROWTH)

    @property
    def analyzing(self) -> bool:
        """True while an ANALYZE is under way."""
        return self._task is not None

    def grew_to(self, size: int) -> None:
        """The tables hold about `size` rows: analyze them if that is past the threshold, beside
        the caller."""
        if self._task is None and self._due(size):
            self._task = asyncio.create_task(self._analyze(), name="postgres-analyze")

    async def grew_to_now(self, size: int) -> None:
        """As `grew_to`, the caller waiting for the ANALYZE: for tables filled in bulk (a
        rebuild's), where no ANALYZE may be left running once they are full."""
        if self._due(size):
            await self._analyze()

    def _due(self, size: int) -> bool:
        """True, and the next threshold set, if `size` is past this one (and not stopped)."""
        if size < self._next or self._stopped:
            return False
        self._next = size * GROWTH
        return True

    async def _analyze(self) -> None:
        try:
            async with self._db.connection("analyzing the tables") as conn:
                for table in self._tables:
                    await conn.execute(f"ANALYZE {table}")
        except Exception as exc:  # only the plans stay as they were; the next growth tries again
            log.warning("could not analyze %s: %s", ", ".join(self._tables), exc)
        finally:
            self._task = None

    async def stop(self) -> None:
        """Cancel an ANALYZE under way and start none again (the store closes)."""
        self._stopped = True
        task, self._task = self._task, None
        await stop_tasks(task)
