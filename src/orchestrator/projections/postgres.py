"""Read models in the log's PostgreSQL schema, on the backend's pool.

Unlike SQLite, writes need no single writer: each save is one transaction on a connection of the
pool, beside the appends. Table names carry a prefix so that a rebuild can fill fresh tables
beside the live ones (postgres_tables.py swaps them).

A save checks the stored checkpoint and generation with `SELECT ... FOR UPDATE`: two projectors
saving at once (two processes) are serialised on those rows, and the second finds the checkpoint
moved and reloads, so no event is counted twice.

A row's state is stored as in SQLite (packed_states.py), deflated with a dictionary of its kind
in `packed` (a finished workflow: about 1,500 bytes of JSON, about 100 packed), or as JSON text in
`state` where packing does not pay or its kind has no dictionary yet. Unlike SQLite, states in
flight are packed too: a row is rewritten at every batch while the engine drives it, and
PostgreSQL keeps each old version until it is pruned or vacuumed, so every version's size counts
(measured, 4,000 workflows: 5,600 bytes of table a workflow with states in flight as text, 400
with them packed; leaving free room in each page for the new versions made it larger, not smaller).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

import asyncpg

from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.eventstore.postgres_connection import PostgresDatabase
from orchestrator.eventstore.postgres_statistics import GrowingTables
from orchestrator.projections.models import Row
from orchestrator.projections.packed_states import ENCODING, StateCodec, name_of
from orchestrator.projections.storage import ListQuery, ProjectionMoved, name_pattern
from orchestrator.projections.tables import (
    CHECKPOINT,
    FORMAT,
    GENERATION,
    LIVE,
    READ_MODEL_FORMAT,
)

TABLES = ("rows", "counters", "checkpoints", "dictionaries")
#: Every index under a prefix, constraints' included: index names are per schema in PostgreSQL,
#: so a swap renames them with their tables, and a rebuild's fresh tables can use the names again.
INDEXES = (
    "rows_pkey",
    "rows_by_status",
    "rows_by_parent",
    "rows_needing_engine",
    "counters_pkey",
    "checkpoints_pkey",
    "dictionaries_pkey",
)
#: The row of the checkpoints table holding packed_states.ENCODING (in its `position` column).
ENCODING_ROW = "postgres_encoding"

log = logging.getLogger(__name__)
#: The letters a name search lowers (ListQuery.name).
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def schema_statements(prefix: str) -> tuple[str, ...]:
    """The CREATE statements of the read-model tables and indexes under `prefix`."""
    return (
        f"""CREATE TABLE IF NOT EXISTS {prefix}rows (
            kind         TEXT    NOT NULL,
            id           BIGINT  NOT NULL,
            status       TEXT    NOT NULL,
            parent_id    BIGINT,
            deleted      BOOLEAN NOT NULL,
            needs_engine BOOLEAN NOT NULL,
            position     BIGINT  NOT NULL,
            name         TEXT    NOT NULL,
            state        TEXT,
            packed       BYTEA,
            CONSTRAINT {prefix}rows_pkey PRIMARY KEY (kind, id),
            CONSTRAINT {prefix}rows_one_state CHECK ((state IS NULL) <> (packed IS NULL))
        )""",
        f"""CREATE INDEX IF NOT EXISTS {prefix}rows_by_status
            ON {prefix}rows (kind, deleted, status, id)""",
        f"""CREATE INDEX IF NOT EXISTS {prefix}rows_by_parent
            ON {prefix}rows (kind, parent_id, id) WHERE parent_id IS NOT NULL""",
        f"""CREATE INDEX IF NOT EXISTS {prefix}rows_needing_engine
            ON {prefix}rows (kind, id) WHERE needs_engine""",
        f"""CREATE TABLE IF NOT EXISTS {prefix}counters (
            name  TEXT   NOT NULL,
            count BIGINT NOT NULL,
            CONSTRAINT {prefix}counters_pkey PRIMARY KEY (name)
        )""",
        f"""CREATE TABLE IF NOT EXISTS {prefix}checkpoints (
            name     TEXT   NOT NULL,
            position BIGINT NOT NULL,
            CONSTRAINT {prefix}checkpoints_pkey PRIMARY KEY (name)
        )""",
        f"""CREATE TABLE IF NOT EXISTS {prefix}dictionaries (
            id         BIGINT NOT NULL,
            kind       TEXT   NOT NULL,
            dictionary BYTEA  NOT NULL,
            CONSTRAINT {prefix}dictionaries_pkey PRIMARY KEY (id)
        )""",
    )


async def create_tables(conn: asyncpg.Connection, prefix: str) -> None:
    """Create the tables under `prefix` where missing, with the checkpoint rows a save locks."""
    for statement in schema_statements(prefix):
        await conn.execute(statement)
    await conn.execute(
        f"INSERT INTO {prefix}checkpoints (name, position) VALUES ($1, 0), ($2, 0) "
        "ON CONFLICT (name) DO NOTHING",
        CHECKPOINT,
        GENERATION,
    )


async def drop_tables(conn: asyncpg.Connection, prefix: str) -> None:
    """Drop the read-model tables under `prefix` (their indexes go with them)."""
    for name in TABLES:
        await conn.execute(f"DROP TABLE IF EXISTS {prefix}{name}")


async def set_position(conn: asyncpg.Connection, prefix: str, name: str, position: int) -> None:
    """Store `position` in the checkpoints row `name` under `prefix`."""
    await conn.execute(
        f"INSERT INTO {prefix}checkpoints (name, position) VALUES ($1, $2) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        name,
        position,
    )


def check_prefix(prefix: str) -> str:
    """`prefix` if it is safe to write unquoted into table names; ValueError otherwise."""
    if not prefix.replace("_", "").isalnum() or not prefix.isascii() or prefix != prefix.lower():
        raise ValueError(f"a table prefix is lower-case letters, digits and _, not {prefix!r}")
    return prefix


def save_statement(prefix: str) -> str:
    """Everything a save writes once it holds the checkpoint, as one statement (one round trip,
    where a statement each took four): the rows ($1-$9) with the dictionaries their packed
    states need ($10-$12: a row never outlives its dictionary, whatever tables were swapped in
    since), the counters' deltas ($13-$14), the checkpoint ($15 := $16), and the NOTIFY that
    wakes the processes following this writer ($17, $18; projections/postgres_leadership.py),
    sent at commit."""
    return (
        f"WITH dictionaries AS (INSERT INTO {prefix}dictionaries (id, kind, dictionary) "
        "SELECT * FROM unnest($10::bigint[], $11::text[], $12::bytea[]) "
        "ON CONFLICT (id) DO NOTHING), "
        f"saved AS (INSERT INTO {prefix}rows (kind, id, status, parent_id, deleted, "
        "needs_engine, name, state, packed, position) "
        "SELECT k, i, s, p, d, n, m, t, b, $16 "
        "FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], "
        "$5::boolean[], $6::boolean[], $7::text[], $8::text[], $9::bytea[]) "
        "AS u (k, i, s, p, d, n, m, t, b) "
        "ON CONFLICT (kind, id) DO UPDATE SET status = excluded.status, "
        "parent_id = excluded.parent_id, deleted = excluded.deleted, "
        "needs_engine = excluded.needs_engine, position = excluded.position, "
        "name = excluded.name, state = excluded.state, packed = excluded.packed), "
        f"counted AS (INSERT INTO {prefix}counters (name, count) "
        "SELECT * FROM unnest($13::text[], $14::bigint[]) "
        f"ON CONFLICT (name) DO UPDATE SET count = {prefix}counters.count + excluded.count), "
        f"moved AS (INSERT INTO {prefix}checkpoints (name, position) VALUES ($15, $16) "
        "ON CONFLICT (name) DO UPDATE SET position = excluded.position) "
        "SELECT pg_notify($17, $18)"
    )


class PostgresProjectionStorage:
    """Read-model rows, counters and the checkpoint, written in one transaction."""

    def __init__(self, db: PostgresDatabase, *, prefix: str = "projection_") -> None:
        self.prefix = check_prefix(prefix)
        self._db = db
        self._states = StateCodec(in_flight=True)
        #: The rows table analyzed as it grows (postgres_statistics.py): the live one beside
        #: the projector; a rebuild's by the rebuild itself, which waits for each ANALYZE
        #: (without them its lookups of rows scanned the whole table once it was planned for
        #: an empty one: 130,000 events/s at the start of 1,000,000, 35,000 at the end). None
        #: is left running for the swap, whose renames, under the append lock, would wait for
        #: it; the swap analyzes the rows once more before it locks (postgres_tables.py).
        self._growing = GrowingTables(db, (f"{self.prefix}rows",))

    async def open(self) -> None:
        """Create the tables if they are missing (the store must be open); drop and recreate
        read models of another READ_MODEL_FORMAT or encoding, to be rebuilt from the log."""
        prefix = self.prefix
        async with self._db.transaction("preparing the read models") as conn:
            # Serialised with other processes opening the same tables.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", self._db.ddl_lock_key)
            exists = await conn.fetchval(f"SELECT to_regclass('{prefix}checkpoints') IS NOT NULL")
            if exists:
                found = {
                    str(name): int(at)
                    for name, at in await conn.fetch(
                        f"SELECT name, position FROM {prefix}checkpoints "
                        "WHERE name = ANY($1::text[])",
                        [FORMAT, ENCODING_ROW],
                    )
                }
                # Tables without an encoding row were written before states were packed.
                stored = (found.get(FORMAT, READ_MODEL_FORMAT), found.get(ENCODING_ROW, 0))
                if stored != (READ_MODEL_FORMAT, ENCODING):
                    log.warning(
                        "the read models in %s are of format %d.%d, not %d.%d; rebuilding them "
                        "from the log",
                        self._db.name,
                        *stored,
                        READ_MODEL_FORMAT,
                        ENCODING,
                    )
                    await drop_tables(conn, prefix)
            await create_tables(conn, prefix)
            await set_position(conn, prefix, FORMAT, READ_MODEL_FORMAT)
            await set_position(conn, prefix, ENCODING_ROW, ENCODING)
            self._states.learn(
                await conn.fetch(f"SELECT id, kind, dictionary FROM {prefix}dictionaries")
            )
            checkpoint = await conn.fetchval(
                f"SELECT position FROM {prefix}checkpoints WHERE name = $1", CHECKPOINT
            )
        self._growing.start_at(int(checkpoint or 0))

    async def close(self) -> None:
        """Stop an ANALYZE under way (the connections are the backend's pool's)."""
        await self._growing.stop()

    async def _fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        return await self._db.fetch("a read-model read", sql, *args)

    async def _position(self, name: str) -> int:
        rows = await self._fetch(
            f"SELECT position FROM {self.prefix}checkpoints WHERE name = $1", name
        )
        return int(rows[0][0]) if rows else 0

    async def load_checkpoint(self) -> int:
        """The last applied position."""
        return await self._position(CHECKPOINT)

    async def load_generation(self) -> int:
        """How many times a rebuild swapped these tables in."""
        return await self._position(GENERATION)

    async def load_counters(self) -> dict[str, int]:
        """Counters by name."""
        rows = await self._fetch(f"SELECT name, count FROM {self.prefix}counters")
        return {str(name): int(count) for name, count in rows}

    async def load_rows(self, kind: str, ids: Iterable[int]) -> dict[int, bytes]:
        """Stored states for these ids."""
        rows = await self._fetch(
            f"SELECT id, state, packed FROM {self.prefix}rows "
            "WHERE kind = $1 AND id = ANY($2::bigint[])",
            kind,
            list(ids),
        )
        states = await self._unpack(rows)
        return {int(row[0]): state for row, state in zip(rows, states, strict=True)}

    async def _unpack(self, rows: Sequence[asyncpg.Record]) -> list[bytes]:
        """The states of rows ending in (state, packed) as JSON, loading the dictionaries they
        need that this process has not met yet (another process may have packed them)."""
        stored = [row[-2] if row[-1] is None else row[-1] for row in rows]
        return await unpack_states(self._states, stored, self._fetch, self.prefix, self._db.name)

    async def save(
        self,
        rows: Sequence[Row],
        counter_deltas: Mapping[str, int],
        position: int,
        expected_checkpoint: int,
        expected_generation: int = 0,
    ) -> None:
        """Rows, counter deltas and checkpoint in one transaction."""
        latest = {(row.kind, row.id): row for row in rows}  # one statement may touch a row once
        columns: list[list[object]] = [[] for _ in range(9)]
        dictionaries: dict[int, tuple[int, str, bytes]] = {}
        for row in latest.values():
            state, dictionary = self._states.pack(row)
            if dictionary is not None:
                dictionaries[dictionary[0]] = (dictionary[0], row.kind, dictionary[1])
            text, packed = (state, None) if isinstance(state, str) else (None, state)
            values = (row.kind, row.id, row.status, row.parent_id, row.deleted, row.needs_engine)
            for column, value in zip(
                columns, (*values, name_of(row.state), text, packed), strict=True
            ):
                column.append(value)
        deltas = [(name, delta) for name, delta in counter_deltas.items() if delta]
        prefix = self.prefix
        async with self._db.transaction("a read-model save") as conn:
            found = await conn.fetch(
                f"SELECT name, position FROM {prefix}checkpoints WHERE name = ANY($1::text[]) "
                "ORDER BY name FOR UPDATE",
                [CHECKPOINT, GENERATION],
            )
            stored = {str(name): int(at) for name, at in found}
            checkpoint = stored.get(CHECKPOINT, 0)
            if (
                checkpoint != expected_checkpoint
                or stored.get(GENERATION, 0) != expected_generation
            ):
                raise ProjectionMoved(expected_checkpoint, checkpoint)
            packed_with = [list(column) for column in zip(*dictionaries.values(), strict=True)]
            deltas_by_column = [list(column) for column in zip(*deltas, strict=True)]
            await conn.execute(
                save_statement(prefix),
                *columns,
                *(packed_with or [[], [], []]),
                *(deltas_by_column or [[], []]),
                CHECKPOINT,
                position,
                self._db.checkpoint_channel,
                str(position),
            )
        # By events, not rows: the log's growth is the rows'.
        if self.prefix == LIVE:
            self._growing.grew_to(position)
        else:
            await self._growing.grew_to_now(position)

    async def list_rows(self, query: ListQuery) -> list[bytes]:
        """Matching non-deleted rows in id order, one page."""
        where = ["kind = $1", "NOT deleted"]
        params: list[object] = [query.kind]
        if query.status is not None:
            params.append(query.status)
            where.append(f"status = ${len(params)}")
        if query.parent_id is not None:
            params.append(query.parent_id)
            where.append(f"parent_id = ${len(params)}")
        if query.name is not None:  # only ASCII letters lowered, as SQLite's LIKE ignores them
            params.append(name_pattern(query.name))
            where.append(
                f"translate(name, '{_UPPER}', '{_UPPER.lower()}') LIKE ${len(params)} ESCAPE '\\'"
            )
        params += [query.limit, query.skip]
        rows = await self._fetch(
            f"SELECT state, packed FROM {self.prefix}rows WHERE {' AND '.join(where)} "
            f"ORDER BY id{' DESC' if query.descending else ''} "
            f"LIMIT ${len(params) - 1} OFFSET ${len(params)}",
            *params,
        )
        return await self._unpack(rows)

    async def ids_needing_engine(self, kind: str) -> list[int]:
        """Ids the engine must resume."""
        rows = await self._fetch(
            f"SELECT id FROM {self.prefix}rows WHERE kind = $1 AND needs_engine ORDER BY id", kind
        )
        return [int(row[0]) for row in rows]

    async def max_id(self, kind: str) -> int:
        """Highest id of this kind seen."""
        rows = await self._fetch(
            f"SELECT COALESCE(MAX(id), 0) FROM {self.prefix}rows WHERE kind = $1", kind
        )
        return int(rows[0][0])


async def unpack_states(
    states: StateCodec,
    stored: list[str | bytes],
    fetch: Callable[..., Awaitable[Sequence[asyncpg.Record]]],
    prefix: str,
    where: str,
) -> list[bytes]:
    """Stored states as JSON; the dictionaries they need that `states` has not learnt are read
    from the prefix's dictionaries table (with `fetch(sql, *args)`) first."""
    try:
        return [states.unpack(value) for value in stored]
    except KeyError:
        missing = states.unknown(stored)
        states.learn(
            await fetch(
                f"SELECT id, kind, dictionary FROM {prefix}dictionaries "
                "WHERE id = ANY($1::bigint[])",
                missing,
            )
        )
    try:
        return [states.unpack(value) for value in stored]
    except KeyError as exc:
        raise StoreUnavailable(
            f"a read-model row in {where} needs dictionary {exc}, which is not stored"
        ) from exc
