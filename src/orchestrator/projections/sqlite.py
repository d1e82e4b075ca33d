"""Read models in the same SQLite file as the log.

Reads use a connection of their own; writes go through the event store's single writer (see
`SQLiteEventStore.write_transaction`), so the log and the read models never wait on each other's
locks. Table names carry a prefix so that a rebuild can fill fresh tables beside the live ones.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Mapping, Sequence

import aiosqlite

from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.eventstore.sqlite_schema import connect
from orchestrator.projections.models import Row
from orchestrator.projections.packed_states import ENCODING, StateCodec, name_of
from orchestrator.projections.storage import ListQuery, ProjectionMoved, name_pattern
from orchestrator.projections.tables import CHECKPOINT as CHECKPOINT
from orchestrator.projections.tables import FORMAT as FORMAT
from orchestrator.projections.tables import GENERATION as GENERATION
from orchestrator.projections.tables import LIVE
from orchestrator.projections.tables import READ_MODEL_FORMAT as READ_MODEL_FORMAT

#: The row of the checkpoints table holding packed_states.ENCODING (in its `position` column).
ENCODING_ROW = "sqlite_encoding"
TABLES = ("rows", "counters", "checkpoints", "dictionaries")
INDEXES = ("rows_by_status", "rows_by_parent", "rows_needing_engine")

log = logging.getLogger(__name__)


def add_dictionaries_sql(prefix: str) -> str:
    """Store (id, kind, dictionary) rows; one already stored stays (an id is its content's)."""
    return f"INSERT OR IGNORE INTO {prefix}dictionaries (id, kind, dictionary) VALUES (?, ?, ?)"


def put_rows_sql(prefix: str) -> str:
    """Store read-model rows (kind, id, status, parent_id, deleted, needs_engine, position,
    name, state), each replacing the aggregate's row."""
    return (
        f"INSERT OR REPLACE INTO {prefix}rows (kind, id, status, parent_id, deleted, "
        "needs_engine, position, name, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )


def add_counts_sql(prefix: str) -> str:
    """Add (name, delta) to the counters."""
    return (
        f"INSERT INTO {prefix}counters (name, count) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET count = count + excluded.count"
    )


def set_position_sql(prefix: str) -> str:
    """Set (name, position) in the checkpoints table."""
    return (
        f"INSERT INTO {prefix}checkpoints (name, position) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position"
    )


async def drop_tables(conn: aiosqlite.Connection, prefix: str) -> None:
    """Drop the read-model tables and indexes under `prefix`."""
    for name in INDEXES:
        await conn.execute(f"DROP INDEX IF EXISTS {prefix}{name}")
    for name in TABLES:
        await conn.execute(f"DROP TABLE IF EXISTS {prefix}{name}")


def schema_statements(prefix: str, *, indexes: bool = True) -> tuple[str, ...]:
    """The CREATE statements of the read-model tables and indexes under `prefix` (without the
    indexes: the tables alone)."""
    statements = (
        f"""CREATE TABLE IF NOT EXISTS {prefix}rows (
            kind         TEXT    NOT NULL,
            id           INTEGER NOT NULL,
            status       TEXT    NOT NULL,
            parent_id    INTEGER,
            deleted      INTEGER NOT NULL,
            needs_engine INTEGER NOT NULL,
            position     INTEGER NOT NULL,
            name         TEXT    NOT NULL,
            state        BLOB    NOT NULL,
            PRIMARY KEY (kind, id)
        ) WITHOUT ROWID""",
        f"""CREATE INDEX IF NOT EXISTS {prefix}rows_by_status
            ON {prefix}rows (kind, deleted, status, id)""",
        f"""CREATE INDEX IF NOT EXISTS {prefix}rows_by_parent
            ON {prefix}rows (kind, parent_id, id) WHERE parent_id IS NOT NULL""",
        f"""CREATE INDEX IF NOT EXISTS {prefix}rows_needing_engine
            ON {prefix}rows (kind, id) WHERE needs_engine = 1""",
        f"""CREATE TABLE IF NOT EXISTS {prefix}counters (
            name  TEXT PRIMARY KEY,
            count INTEGER NOT NULL
        )""",
        f"""CREATE TABLE IF NOT EXISTS {prefix}checkpoints (
            name     TEXT PRIMARY KEY,
            position INTEGER NOT NULL
        )""",
        f"""CREATE TABLE IF NOT EXISTS {prefix}dictionaries (
            id         INTEGER PRIMARY KEY,
            kind       TEXT    NOT NULL,
            dictionary BLOB    NOT NULL
        )""",
    )
    return statements if indexes else tuple(s for s in statements if " INDEX " not in s)


class SQLiteProjectionStorage:
    """Read-model rows, counters and the checkpoint, written in one transaction."""

    def __init__(
        self, store: SQLiteEventStore, *, prefix: str = "projection_", busy_timeout_ms: int = 10_000
    ) -> None:
        if not prefix.replace("_", "").isalnum():
            raise ValueError(f"a table prefix is letters, digits and _, not {prefix!r}")
        self.path = store.path
        self.prefix = prefix
        self._store = store
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: aiosqlite.Connection | None = None
        self._states = StateCodec()

    async def open(self) -> None:
        """Connect for reads and create the tables if they are missing (the store must be open)."""
        self._conn = await connect(self.path, self._busy_timeout_ms)

        prefix = self.prefix
        # Scratch tables (a rebuild's, a check's) have no indexes: their rows are found by key,
        # and a swap makes the live tables' indexes anew, so keeping them up to date at every
        # batch would be work thrown away.
        indexed = prefix == LIVE

        async def create(conn: aiosqlite.Connection) -> None:
            for statement in schema_statements(prefix, indexes=indexed):
                await conn.execute(statement)
            rows = await conn.execute_fetchall(f"SELECT name, position FROM {prefix}checkpoints")
            found = {str(name): int(at) for name, at in rows}
            # Tables that hold rows but no format row were written before formats were kept,
            # and tables without an encoding row before states were packed (packed_states.py).
            stored = found.get(FORMAT, 1 if found else READ_MODEL_FORMAT)
            encoding = found.get(ENCODING_ROW, 0 if found else ENCODING)
            columns = await conn.execute_fetchall(f"PRAGMA table_info({prefix}rows)")
            if "name" not in {column[1] for column in columns}:
                encoding = 0
            if stored != READ_MODEL_FORMAT or encoding != ENCODING:
                log.warning(
                    "the read models in %s are of format %d.%d, not %d.%d; rebuilding them from "
                    "the log",
                    self.path,
                    stored,
                    encoding,
                    READ_MODEL_FORMAT,
                    ENCODING,
                )
                await drop_tables(conn, prefix)
                for statement in schema_statements(prefix, indexes=indexed):
                    await conn.execute(statement)
            await conn.executemany(
                set_position_sql(prefix), [(FORMAT, READ_MODEL_FORMAT), (ENCODING_ROW, ENCODING)]
            )
            self._states.learn(
                await conn.execute_fetchall(
                    f"SELECT id, kind, dictionary FROM {prefix}dictionaries"
                )
            )

        await self._store.write_transaction(create)

    async def close(self) -> None:
        """Close the read connection."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _fetch(self, sql: str, params: Iterable[object] = ()) -> list[sqlite3.Row]:
        if self._conn is None:
            raise StoreUnavailable("the SQLite projection storage is not open")
        try:
            return list(await self._conn.execute_fetchall(sql, tuple(params)))
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"projection read from {self.path} failed: {exc}") from exc

    async def load_checkpoint(self) -> int:
        """The last applied position."""
        rows = await self._fetch(
            f"SELECT position FROM {self.prefix}checkpoints WHERE name = ?", (CHECKPOINT,)
        )
        return int(rows[0][0]) if rows else 0

    async def load_generation(self) -> int:
        """How many times a rebuild swapped these tables in."""
        rows = await self._fetch(
            f"SELECT position FROM {self.prefix}checkpoints WHERE name = ?", (GENERATION,)
        )
        return int(rows[0][0]) if rows else 0

    async def load_counters(self) -> dict[str, int]:
        """Counters by name."""
        rows = await self._fetch(f"SELECT name, count FROM {self.prefix}counters")
        return {name: int(count) for name, count in rows}

    async def load_rows(self, kind: str, ids: Iterable[int]) -> dict[int, bytes]:
        """Stored states for these ids."""
        wanted = list(ids)
        found: dict[int, bytes] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self._fetch(
                f"SELECT id, state FROM {self.prefix}rows WHERE kind = ? AND id IN ({marks})",
                [kind, *chunk],
            )
            states = await self._unpack([state for _, state in rows])
            found.update((int(row[0]), state) for row, state in zip(rows, states, strict=True))
        return found

    async def _unpack(self, stored: list[str | bytes]) -> list[bytes]:
        """Stored states as JSON, loading the dictionaries they need (packed_states.py)."""
        try:
            return [self._states.unpack(value) for value in stored]
        except KeyError:
            missing = self._states.unknown(stored)
            marks = ",".join("?" * len(missing))
            self._states.learn(
                await self._fetch(
                    f"SELECT id, kind, dictionary FROM {self.prefix}dictionaries "
                    f"WHERE id IN ({marks})",
                    missing,
                )
            )
        try:
            return [self._states.unpack(value) for value in stored]
        except KeyError as exc:
            raise StoreUnavailable(
                f"a read-model row in {self.path} needs dictionary {exc}, which is not stored"
            ) from exc

    async def save(
        self,
        rows: Sequence[Row],
        counter_deltas: Mapping[str, int],
        position: int,
        expected_checkpoint: int,
        expected_generation: int = 0,
    ) -> None:
        """Rows, counter deltas and checkpoint in one transaction.

        The rows are packed in the writer's thread, inside the transaction: packing a settled
        state deflates it, and zlib lets go of the GIL for each call, which on the event loop's
        thread cost a hand-over of the GIL it then waited to get back (as payloads in the log's
        group commit, eventstore/sqlite.py).
        """
        states = self._states

        def packed() -> tuple[list[tuple[object, ...]], list[tuple[int, str, bytes]]]:
            values: list[tuple[object, ...]] = []
            dictionaries: dict[int, tuple[int, str, bytes]] = {}
            for row in rows:
                state, dictionary = states.pack(row)
                if dictionary is not None:
                    dictionaries[dictionary[0]] = (dictionary[0], row.kind, dictionary[1])
                values.append(
                    (
                        row.kind,
                        row.id,
                        row.status,
                        row.parent_id,
                        int(row.deleted),
                        int(row.needs_engine),
                        position,
                        name_of(row.state),
                        state,
                    )
                )
            return values, list(dictionaries.values())

        deltas = [(name, delta) for name, delta in counter_deltas.items() if delta]
        prefix = self.prefix

        def write(conn: sqlite3.Connection) -> None:
            marks = conn.execute(f"SELECT name, position FROM {prefix}checkpoints").fetchall()
            found = {str(name): int(at) for name, at in marks}
            stored = int(found.get(CHECKPOINT, 0))
            generation = int(found.get(GENERATION, 0))
            if stored != expected_checkpoint or generation != expected_generation:
                raise ProjectionMoved(expected_checkpoint, stored)
            values, dictionaries = packed()
            if dictionaries:  # a row never outlives its dictionary, whatever was swapped in
                conn.executemany(add_dictionaries_sql(prefix), dictionaries)
            if values:
                conn.executemany(put_rows_sql(prefix), values)
            if deltas:
                conn.executemany(add_counts_sql(prefix), deltas)
            conn.execute(set_position_sql(prefix), (CHECKPOINT, position))

        # One hand-over to the writer's thread for the whole transaction, committed without a
        # sync of its own: the read models are derived from the log, and their rows, counters
        # and checkpoint commit together. A power cut can only undo the last such commits (the
        # next group commit of the log syncs them with it), which leaves an older checkpoint
        # that the projector catches up from at the next start, as after any stop. The log's
        # commits stay synchronous=FULL: what an answer acknowledged is on disk. A rebuild's
        # scratch tables are read by nothing until a swap (a durable commit) makes them live.
        await self._store.write_transaction_now(write, durable=False)

    async def list_rows(self, query: ListQuery) -> list[bytes]:
        """Matching non-deleted rows in id order, one page."""
        where = ["kind = ?", "deleted = 0"]
        params: list[object] = [query.kind]
        if query.status is not None:
            where.append("status = ?")
            params.append(query.status)
        if query.parent_id is not None:
            where.append("parent_id = ?")
            params.append(query.parent_id)
        if query.name is not None:  # LIKE ignores the case of ASCII letters, as ListQuery says
            where.append("name LIKE ? ESCAPE '\\'")
            params.append(name_pattern(query.name))
        params += [query.limit, query.skip]
        rows = await self._fetch(
            f"SELECT state FROM {self.prefix}rows WHERE {' AND '.join(where)} "
            f"ORDER BY id{' DESC' if query.descending else ''} LIMIT ? OFFSET ?",
            params,
        )
        return await self._unpack([row[0] for row in rows])

    async def ids_needing_engine(self, kind: str) -> list[int]:
        """Ids the engine must resume."""
        rows = await self._fetch(
            f"SELECT id FROM {self.prefix}rows WHERE kind = ? AND needs_engine = 1 ORDER BY id",
            (kind,),
        )
        return [int(row[0]) for row in rows]

    async def max_id(self, kind: str) -> int:
        """Highest id of this kind seen."""
        rows = await self._fetch(
            f"SELECT COALESCE(MAX(id), 0) FROM {self.prefix}rows WHERE kind = ?", (kind,)
        )
        return int(rows[0][0])
