"""The PostgreSQL event store: appends serialised by an advisory lock, group commit per process.

**Global order without gaps.** A reader follows the log with `read_all(after)`: once it has seen
position p it never asks for anything at or below p again. So a position must never become
visible after a higher one. Positions from a sequence break that: two transactions take 7 and 8,
8 commits first, a reader sees 8 and moves its cursor past 7, then 7 commits and that reader has
skipped it forever (a gap that closes late). Instead every append transaction first takes one
transaction-level advisory lock (`pg_advisory_xact_lock`, see postgres_connection.LOCK_APPENDS),
held until it commits, then computes its positions as max(position) + 1 and reads the previous
chain hash, under the lock. Appends therefore commit one after another, in position order, across
every process on the database: a reader that sees position p has every position before it, and
the hash chain is built on the true predecessor. (The transaction is READ COMMITTED and the lock
is taken by a statement of its own, so the reads that follow see the previous holder's commit.)

**Group commit.** Serialised transactions would cap throughput at one round trip chain per
append, so, as on SQLite, appends queue up in the process and one writer task commits everything
queued in one transaction: the lock is taken once per batch. Each append still gets its own
version check and result; a conflicting append is refused alone, the others in its batch commit.

**Waking readers.** The append transaction sends `NOTIFY` with the new head; each store listens on
a connection of its own (postgres_head.py), so a reader in any process wakes at once. If that
connection is lost, waits fall back to polling the head until it is listening again.

**Compact rows.** Events are stored in the compact form of postgres_codec.py (event schema 4):
payloads are packed before they are queued (off the append lock), ids of new types and metadata
texts are handed out inside the append transaction, and one codec (compact.RowCodec) turns rows
of either form back into the text the chain hashes, loading the ids another process stored when
it meets them. The payloads' dictionary is learned beside the writer once the log is long enough
and stored by the next append transaction (postgres_dictionary.py); a process that has none yet
stores payloads as text, which reads back as well.

Other writes (read models, anchors, idempotency answers) use connections of the pool directly:
PostgreSQL's row locks let them run beside appends, unlike SQLite's single writer.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

import asyncpg

from orchestrator.eventstore.base import (
    AppendResult,
    FoldingEvent,
    NewEvent,
    PartSource,
    RecordedEvent,
    StreamAppend,
    check_continues,
)
from orchestrator.eventstore.chain import ChainRow, chain_rows
from orchestrator.eventstore.coalescing import Coalescer
from orchestrator.eventstore.compact import LEARN_AFTER, RowCodec
from orchestrator.eventstore.errors import (
    ConcurrencyConflict,
    EventStoreError,
    StoreUnavailable,
)
from orchestrator.eventstore.group_commit import (
    EncodedEvents,
    QueuedAppend,
    fail,
    plan_batch,
    settle,
)
from orchestrator.eventstore.keys import IdempotencyClaim, IdempotencyRecord
from orchestrator.eventstore.leases import Fence
from orchestrator.eventstore.postgres_codec import (
    COLUMNS,
    FOLDING_COLUMNS,
    INSERT,
    Assigned,
    as_events,
    as_folding,
    chain_rows_of,
    compact_columns,
    decoded,
    prepare,
    shaped_for_folding,
)
from orchestrator.eventstore.postgres_connection import PostgresDatabase
from orchestrator.eventstore.postgres_dictionary import Dictionaries, DictionaryLearning
from orchestrator.eventstore.postgres_head import HeadWatch
from orchestrator.eventstore.postgres_keys import (
    INSERT_KEY,
    SELECT_KEY,
    purge,
    row_to_record,
    save_answer,
)
from orchestrator.eventstore.postgres_leases import fences_holding
from orchestrator.eventstore.postgres_schema import (
    encode_events,
    migrate,
    refuse_nul,
    stream_version,
    versions_and_head,
)
from orchestrator.eventstore.postgres_statistics import GrowingTables

_MAX_BATCH = 512
#: Seconds between two probes of health_problem (/health is public and may be asked often).
_PROBE_INTERVAL = 5.0
#: Longest a health probe may take: an unreachable server must not hang /health.
_PROBE_TIMEOUT = 5.0
#: Imported events are inserted this many at a time (all in one transaction).
_IMPORT_CHUNK = 5000


class _Queued(QueuedAppend):
    """A queued append with its payloads already in their stored form (packed before queueing,
    so the deflating is not done while the batch holds the append lock)."""

    __slots__ = ("payloads",)

    def __init__(
        self,
        stream_id: str,
        expected: int,
        events: EncodedEvents,
        payloads: list[str | bytes],
        future: asyncio.Future[AppendResult],
        claim: IdempotencyClaim | None,
        fence: Fence | None,
    ) -> None:
        super().__init__(stream_id, expected, events, future, claim, fence)
        self.payloads = payloads


class PostgresEventStore:
    """The event log in a PostgreSQL schema, append-only enforced by a trigger."""

    def __init__(self, db: PostgresDatabase, *, learn_after: int = LEARN_AFTER) -> None:
        self.db = db
        #: Reads rows of either form and packs payloads; it knows only what is committed.
        self._codec = RowCodec()
        self._learn_after = learn_after
        self._dictionary = DictionaryLearning(db, learn_after)
        self._growing = GrowingTables(db, ("events",))
        self._queue: deque[_Queued] = deque()
        self._queued = asyncio.Event()
        self._writer_task: asyncio.Task[None] | None = None
        self._closing = False
        self._watch = HeadWatch(db, self._read_head)
        self._last_probe = float("-inf")
        self._problem: str | None = None
        self._ids: Coalescer[tuple[str, int], int] = Coalescer(self._issue_ids)
        #: Told each group commit's size (appends) and seconds (metrics).
        self.commit_observers: list[Callable[[int, float], None]] = []

    async def open(self) -> None:
        """Connect, create or check the schema, listen for commits, start the writer."""
        await self.db.open()
        try:
            await migrate(self.db)
            # Nothing known of a log before it is opened (the schema may have been made anew).
            self._codec = RowCodec()
            self._dictionary = DictionaryLearning(self.db, self._learn_after)
            async with self.db.connection("loading the event lookups") as conn:
                await prepare(conn, self._codec)
            await self._watch.start()
            self._growing = GrowingTables(self.db, ("events",))
            self._growing.start_at(self._watch.head)
        except BaseException:
            await self._watch.stop()
            await self.db.close()
            raise
        self._closing = False
        self._writer_task = asyncio.create_task(self._write_loop(), name="postgres-group-commit")

    async def close(self) -> None:
        """Commit what is queued, stop the writer, stop listening and close the pool."""
        await self._dictionary.stop()
        await self._growing.stop()  # before the writer's last commits: they start none again
        if self._writer_task is not None:
            self._closing = True
            self._queued.set()
            await self._writer_task
            self._writer_task = None
        await self._watch.stop()
        await self.db.close()

    # Appending -----------------------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        idempotency: IdempotencyClaim | None = None,
        fence: Fence | None = None,
    ) -> AppendResult:
        """Queue the append (and its key) for the next group commit; wait for its outcome.
        With `fence`, it is refused (LeaseLost) unless that lease is still held then."""
        if self._writer_task is None or self._closing:
            raise StoreUnavailable(f"the PostgreSQL event store on {self.db.name} is not open")
        rows = encode_events(events)
        pack = self._codec.pack_payload
        payloads = [pack(data) for _, data, _, _ in rows]
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        queued = _Queued(stream_id, expected_version, rows, payloads, future, idempotency, fence)
        self._queue.append(queued)
        self._queued.set()
        return await future

    async def _write_loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._queued.clear()
                await self._queued.wait()
                continue
            batch = [self._queue.popleft()]
            while len(batch) < _MAX_BATCH and self._queue:
                batch.append(self._queue.popleft())
            began = time.perf_counter()
            await self._commit(batch)
            for observe in self.commit_observers:
                observe(len(batch), time.perf_counter() - began)

    def _committed(self, assigned: Assigned, dictionaries: Dictionaries, head: int) -> None:
        """An append transaction committed: the codec may use the ids and dictionary it stored,
        and the log has reached `head`."""
        assigned.committed(self._codec)
        self._dictionary.committed(self._codec, dictionaries)
        self._watch.moved_to(head)
        self._dictionary.when_due(self._watch.head, self._codec)
        self._growing.grew_to(self._watch.head)

    async def _commit(self, batch: list[_Queued]) -> None:
        head = 0
        assigned = Assigned()
        try:
            async with self.db.transaction("an append", lock_appends=True) as conn:
                versions, head, previous = await versions_and_head(
                    conn, (item.stream_id for item in batch)
                )
                fenced = [i for i, item in enumerate(batch) if item.fence is not None]
                fenced_out: frozenset[int] = frozenset()
                if fenced:
                    fences = [f for i in fenced if (f := batch[i].fence) is not None]
                    holding = await fences_holding(conn, fences)
                    fenced_out = frozenset(
                        fenced[j] for j in range(len(fenced)) if j not in holding
                    )
                recorded_at = datetime.now(UTC).isoformat()
                plan = plan_batch(batch, versions, head, previous, recorded_at, fenced_out)
                if plan.inserts:
                    # The plan holds the accepted appends' events in batch order.
                    payloads = [
                        payload
                        for item, outcome in zip(batch, plan.outcomes, strict=True)
                        if isinstance(outcome, AppendResult)
                        for payload in item.payloads
                    ]
                    columns = await compact_columns(
                        conn, self._codec, plan.inserts, payloads, assigned
                    )
                    await conn.execute(INSERT, *columns)
                    await conn.execute("SELECT pg_notify($1, $2)", self.db.channel, str(plan.head))
                if plan.keys:
                    await conn.executemany(INSERT_KEY, plan.keys)
                dictionaries = await self._dictionary.store(conn)
        except Exception as exc:  # the writer must survive anything, or every append would hang
            failure = self.db.failure(exc, "an append")
            self._last_probe = float("-inf")  # the next /health looks again at once
            fail(batch, failure)
            return
        self._committed(assigned, dictionaries, plan.head)
        settle(batch, plan.outcomes)

    async def append_streams(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append every part in one transaction, under the append lock; a conflict rolls all of
        them back."""
        parts = [(a.stream_id, a.expected_version, encode_events(a.events)) for a in appends]
        pack = self._codec.pack_payload
        payloads = [pack(data) for _, _, events in parts for _, data, _, _ in events]
        self._check_open()
        results: list[AppendResult] = []
        assigned = Assigned()
        async with self.db.transaction("an append", lock_appends=True) as conn:
            versions, head, previous = await versions_and_head(conn, (p[0] for p in parts))
            recorded_at = datetime.now(UTC).isoformat()
            inserts: list[tuple[object, ...]] = []
            for stream_id, expected, events in parts:
                found = versions.setdefault(stream_id, 0)
                if found != expected:
                    raise ConcurrencyConflict(stream_id, expected, found)
                head, previous = chain_rows(
                    inserts, stream_id, expected, events, head, previous, recorded_at
                )
                versions[stream_id] = expected + len(events)
                results.append(AppendResult(version=versions[stream_id], position=head))
            if inserts:
                columns = await compact_columns(conn, self._codec, inserts, payloads, assigned)
                await conn.execute(INSERT, *columns)
                await conn.execute("SELECT pg_notify($1, $2)", self.db.channel, str(head))
            dictionaries = await self._dictionary.store(conn)
        self._committed(assigned, dictionaries, head)
        return results

    async def import_events(self, events: Iterable[RecordedEvent]) -> None:
        """Copy events from another log (positions, times, hashes kept), checking each one.

        All of them in one transaction, under the append lock: if any is refused, none is.
        """
        self._check_open()
        assigned = Assigned()
        packer: RowCodec | None = None
        dictionaries: Dictionaries = []

        async def insert(conn: asyncpg.Connection, values: list[tuple[object, ...]]) -> None:
            nonlocal packer, dictionaries
            texts = [str(row[4]) for row in values]
            if packer is None:  # the first chunk: a dictionary, learned from it if need be
                packer, dictionaries = await self._dictionary.for_import(conn, self._codec, texts)
            payloads = [packer.pack_payload(text) for text in texts]
            columns = await compact_columns(conn, self._codec, values, payloads, assigned)
            await conn.execute(INSERT, *columns)

        async with self.db.transaction("an import", lock_appends=True) as conn:
            _, head, previous = await versions_and_head(conn, ())
            versions: dict[str, int] = {}
            values: list[tuple[object, ...]] = []
            for event in events:
                if event.stream_id not in versions:
                    versions[event.stream_id] = await stream_version(conn, event.stream_id)
                head, previous = check_continues(event, head, previous, versions)
                fields = event.stored_fields()
                refuse_nul(event.type, fields["data"], f"event at position {event.position}")
                values.append((*fields.values(), event.hash))
                if len(values) >= _IMPORT_CHUNK:
                    await insert(conn, values)
                    values = []
            if values:
                await insert(conn, values)
            await conn.execute("SELECT pg_notify($1, $2)", self.db.channel, str(head))
        self._committed(assigned, dictionaries, head)

    def _check_open(self) -> None:
        if self._writer_task is None or self._closing:
            raise StoreUnavailable(f"the PostgreSQL event store on {self.db.name} is not open")

    # Reading -------------------------------------------------------------------------------------

    async def read_stream(
        self, stream_id: str, up_to_version: int | None = None
    ) -> list[RecordedEvent]:
        """The stream's events in version order."""
        sql = (
            f"SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND version <= $2 ORDER BY version"
        )
        limit = up_to_version if up_to_version is not None else 2**62
        rows = await self.db.fetch("a read", sql, stream_id, limit)
        return await decoded(self.db, self._codec, rows, as_events)

    async def read_all(
        self,
        after: int = 0,
        limit: int = 1000,
        *,
        event_type: str | None = None,
        stream_id: str | None = None,
    ) -> list[RecordedEvent]:
        """Events past `after` in position order, optionally of one type or stream."""
        where = ["position > $1"]
        params: list[object] = [after]
        if event_type is not None:
            params.append(event_type)
            n = len(params)  # rows of schema 3 name their type, later ones have its id
            where.append(
                f"(type_id = (SELECT id FROM event_types WHERE name = ${n}) OR type = ${n})"
            )
        if stream_id is not None:
            params.append(stream_id)
            where.append(f"stream_id = ${len(params)}")
        params.append(limit)
        sql = (
            f"SELECT {COLUMNS} FROM events WHERE {' AND '.join(where)} "
            f"ORDER BY position LIMIT ${len(params)}"
        )
        rows = await self.db.fetch("a read", sql, *params)
        return await decoded(self.db, self._codec, rows, as_events)

    async def read_for_folding(self, after: int, limit: int) -> list[FoldingEvent]:
        """Up to `limit` events past `after`, with only what a fold needs of each (a rebuild's
        reads: no metadata, time or hash sent or decoded)."""
        rows = await self.db.fetch(
            "a read",
            f"SELECT {FOLDING_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            after,
            limit,
        )
        return await decoded(self.db, self._codec, rows, as_folding, shaped_for_folding)

    async def read_chain(self, after: int, limit: int) -> list[ChainRow]:
        """Up to `limit` events past `after` as the chain reads them (chain.ChainRow), built
        from the stored columns without building events: for `verify`, which checks every
        event's hash. A row that cannot be read is handed on marked, so verify reports it."""
        rows = await self.db.fetch(
            "a read",
            f"SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
            after,
            limit,
        )
        return await chain_rows_of(self.db, self._codec, rows)

    async def next_id(self, kind: str, after: int) -> int | None:
        """The kind's counter, moved past `after` and by one: the row's lock makes two
        processes asking at once get different ids. Calls made at once in this process share
        one statement (coalescing.py), which moves the counter by as many."""
        return await self._ids.submit((kind, after))

    async def _issue_ids(self, asked: Sequence[tuple[str, int]]) -> list[int]:
        """One statement per kind asked for: `count` ids past the highest `after`, in order."""
        by_kind: dict[str, list[int]] = {}
        for index, (kind, _) in enumerate(asked):
            by_kind.setdefault(kind, []).append(index)
        issued = [0] * len(asked)
        async with self.db.connection("issuing an id") as conn:
            for kind, indexes in by_kind.items():
                after = max(asked[i][1] for i in indexes)
                last = int(
                    await conn.fetchval(
                        "INSERT INTO aggregate_ids (kind, last) "
                        "VALUES ($1, $2::bigint + $3::bigint) ON CONFLICT (kind) DO UPDATE "
                        "SET last = GREATEST(aggregate_ids.last, $2::bigint) + $3::bigint "
                        "RETURNING last",
                        kind,
                        after,
                        len(indexes),
                    )
                )
                for offset, index in enumerate(indexes):
                    issued[index] = last - len(indexes) + 1 + offset
        return issued

    def part_source(self) -> PartSource:
        """The schema of the log, which other processes may read (base.PartedLog)."""
        return PartSource(self.db.url, self.db.schema, self.db.name)

    async def head_position(self) -> int:
        """The last committed position, read from the database (every process's commits)."""
        return await self._watch.refresh()

    async def _read_head(self) -> int:
        rows = await self.db.fetch("a read", "SELECT COALESCE(MAX(position), 0) FROM events")
        return int(rows[0][0])

    # Idempotency keys ----------------------------------------------------------------------------

    async def read_idempotency(self, key: str) -> IdempotencyRecord | None:
        """The key's row (see postgres_keys.py), if any."""
        rows = await self.db.fetch("a read of an idempotency key", SELECT_KEY, key)
        return row_to_record(rows[0]) if rows else None

    async def save_idempotent_answer(
        self, key: str, request_hash: bytes, status: int, body: bytes
    ) -> None:
        """Store the answer beside the key."""
        async with self.db.transaction("saving an answer") as conn:
            await save_answer(conn, key, request_hash, status, body)

    async def purge_idempotency(self, created_before: float) -> int:
        """Delete the keys created before `created_before`."""
        async with self.db.transaction("purging idempotency keys") as conn:
            return await purge(conn, created_before)

    # Health and waiting --------------------------------------------------------------------------

    async def health_problem(self) -> str | None:
        """Why writes fail now (a sentence), or None: a small write transaction is tried, at most
        once every _PROBE_INTERVAL seconds (sooner after a failed append)."""
        now = time.monotonic()
        if now - self._last_probe < _PROBE_INTERVAL:
            return self._problem
        self._last_probe = now
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT), self.db.transaction("a probe") as conn:
                await conn.fetchval("SELECT COALESCE(MAX(position), 0) FROM events")
                # A transaction id makes the commit a real write (a WAL record) without touching
                # any table: a read-only server (a standby, a read-only transaction default)
                # refuses it, where a plain read would pass.
                await conn.fetchval("SELECT txid_current()")
        except TimeoutError:
            self._problem = (
                f"the PostgreSQL database {self.db.name} did not answer within {_PROBE_TIMEOUT:g} s"
            )
        except EventStoreError as exc:
            self._problem = f"the PostgreSQL database cannot be written: {exc}"
        else:
            self._problem = None
        return self._problem

    async def wait_for_events(self, after: int, timeout: float) -> bool:
        """Wake on any process's commit (NOTIFY); poll the head when not listening, and once
        more at the timeout."""
        return await self._watch.wait_past(after, timeout)
