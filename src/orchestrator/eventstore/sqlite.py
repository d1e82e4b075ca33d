"""The SQLite event store: one writer connection with group commit, one reader connection.

Concurrent appends queue up and are committed together in one `BEGIN IMMEDIATE` transaction, so
the cost of an fsync (synchronous=FULL) is shared by every append in the batch. Each append still
gets its own version check and its own result: a conflicting append is refused alone, the others
in its batch commit.

Other writers in the same process (the projections) queue their transactions on the same writer
through `write_transaction`, instead of opening a second writing connection: two writing
connections to one file would wait on each other through SQLite's busy handler, which sleeps in
steps of milliseconds and would cap throughput at a few hundred commits a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import aiosqlite

from orchestrator.eventstore.base import (
    AppendResult,
    FoldingEvent,
    NewEvent,
    PartSource,
    RecordedEvent,
    StreamAppend,
    check_continues,
    encode_for_storage,
)
from orchestrator.eventstore.chain import GENESIS, ChainRow, chain_rows
from orchestrator.eventstore.compact import LEARN_AFTER
from orchestrator.eventstore.errors import ConcurrencyConflict, StoreUnavailable
from orchestrator.eventstore.group_commit import (
    BatchPlan,
    QueuedAppend,
    fail,
    plan_batch,
    settle,
)
from orchestrator.eventstore.keys import IdempotencyClaim, IdempotencyRecord
from orchestrator.eventstore.leases import Fence
from orchestrator.eventstore.sqlite_codec import (
    FOLDING_COLUMNS,
    SAMPLE_EVENTS,
    SAMPLE_SQL,
    RowCodec,
    compact_rows,
    decode_rows_now,
    learned_dictionary,
    prepare,
    store_dictionary,
    unpack_hash,
)
from orchestrator.eventstore.sqlite_guard import FileGuard
from orchestrator.eventstore.sqlite_keys import (
    INSERT_KEY,
    SELECT_KEY,
    purge,
    row_to_record,
    save_answer,
)
from orchestrator.eventstore.sqlite_schema import (
    COLUMNS,
    INSERT,
    connect,
    migrate,
    refuse_original_database,
    run_on,
)
from orchestrator.eventstore.sqlite_schema import SCHEMA_VERSION as SCHEMA_VERSION
from orchestrator.stopping import stop_tasks

T = TypeVar("T")
log = logging.getLogger(__name__)
_MAX_BATCH = 512
_STREAM_VERSION = "SELECT MAX(version) FROM events WHERE stream_id = ?"
_LAST_EVENT = "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
_PAGE_SQL = f"SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
_FOLDING_SQL = f"SELECT {FOLDING_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
#: A stream read on the event loop's thread takes at most this many rows there (about a
#: millisecond's work); a longer stream's other rows are read by the reader's thread.
_ROWS_NOW = 1000


class _Transaction:
    __slots__ = ("durable", "future", "work")

    def __init__(
        self,
        work: Callable[[aiosqlite.Connection], Awaitable[Any]]
        | Callable[[sqlite3.Connection], Any],
        future: asyncio.Future[Any],
        durable: bool = True,
    ) -> None:
        self.work = work
        self.future = future
        self.durable = durable


class _SyncTransaction(_Transaction):
    """A transaction whose work is a plain function of a sqlite3 connection, run with its
    BEGIN and COMMIT in one hand-over to the writer's thread."""

    __slots__ = ()


#: Seconds between two write probes of health_problem: /health is public, and may be asked often.
_PROBE_INTERVAL = 5.0


async def _probe(conn: aiosqlite.Connection) -> None:
    await conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class SQLiteEventStore:
    """The event log in one SQLite file, append-only enforced by triggers."""

    def __init__(
        self, path: str, *, busy_timeout_ms: int = 10_000, learn_after: int = LEARN_AFTER
    ) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._codec = RowCodec()
        #: The head at which the writer tries to learn a payload dictionary (again).
        self._learn_at = learn_after
        self._learn_after = learn_after
        #: The dictionary being learned beside the writer, if it is.
        self._learning: asyncio.Task[None] | None = None
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        #: A plain connection for short reads made on the event loop's thread (read_stream).
        self._direct: sqlite3.Connection | None = None
        #: True while the writer may commit without syncing (see `_transact_now`); only the
        #: writer's thread reads or sets it.
        self._relaxed = False
        #: The codec of the reads decoded in the reader's thread (read_all, read_chain).
        self._reader_codec = RowCodec()
        self._queue: deque[QueuedAppend | _Transaction] = deque()
        self._queued = asyncio.Event()
        self._last_probe = float("-inf")
        self._writer_task: asyncio.Task[None] | None = None
        self._head = 0
        self._changed = asyncio.Event()
        self._closing = False
        self._guard = FileGuard(path)
        #: Told each group commit's size (appends) and seconds (metrics).
        self.commit_observers: list[Callable[[int, float], None]] = []

    async def open(self) -> None:
        """Connect, create or check the schema, and start the group-commit writer.

        Refuses (OriginalDatabase) a file of the original orchestrator before touching it.
        """
        # Called inline, not in a thread: one read of the schema table at start-up, bounded by a
        # short timeout, and a thread of the default executor would outlive a refused open.
        refuse_original_database(self.path)
        try:
            self._writer = await connect(self.path, self._busy_timeout_ms)
            self._relaxed = False  # connect sets synchronous=FULL
            await migrate(self._writer, self.path)
            self._codec = RowCodec()
            await prepare(self._writer, self._codec)
            self._reader = await connect(self.path, self._busy_timeout_ms)
            self._direct = _direct_reader(self.path)
            self._reader_codec = RowCodec()
            self._head = await self._read_head()
            self._guard.remember()  # the file, -wal and -shm are open by now
        except BaseException:
            await self._close_connections()
            raise
        self._closing = False
        self._writer_task = asyncio.create_task(self._write_loop(), name="sqlite-group-commit")

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close both connections."""
        learning, self._learning = self._learning, None
        await stop_tasks(learning)  # learned again at the next start
        if self._writer_task is not None:
            # The writer drains the queue, finishes the batch it is committing, then returns.
            self._closing = True
            self._queued.set()
            await self._writer_task
            self._writer_task = None
        await self._close_connections()

    async def _close_connections(self) -> None:
        for conn in (self._writer, self._reader):
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    await conn.close()
        self._writer = self._reader = None
        if self._direct is not None:
            with contextlib.suppress(sqlite3.Error):
                self._direct.close()
            self._direct = None

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

        No lease applies here (`fence` is accepted for the protocol's sake): one process holds
        this log, so no other can take an aggregate over.
        """
        if self._writer_task is None or self._closing:
            raise StoreUnavailable("the SQLite event store is not open")
        self._guard.check_known()  # the batch's `check` looks at the file before it commits
        # Encoded here, so a bad event fails its own caller and never reaches a shared batch.
        rows = [(e.type, *encode_for_storage(e), e.schema_version) for e in events]
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self._queue.append(QueuedAppend(stream_id, expected_version, rows, future, idempotency))
        self._queued.set()
        return await future

    async def write_transaction(self, work: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run `work(connection)` inside one write transaction on the store's writer.

        For tables that live beside the log (the projections). `work` must not touch the events
        table; it is committed on its own, between two group commits.
        """
        if self._writer_task is None or self._closing:
            raise StoreUnavailable("the SQLite event store is not open")
        self._guard.check()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_Transaction(work, future))
        self._queued.set()
        return await future

    async def write_transaction_now(
        self, work: Callable[[sqlite3.Connection], T], *, durable: bool = True
    ) -> T:
        """Run `work(connection)`, a plain function of a sqlite3 connection, inside one write
        transaction on the store's writer, in the writer's thread: the transaction in one hand-
        over to that thread, instead of one per statement as `write_transaction` takes.

        `durable=False` commits without syncing the log file (synchronous=NORMAL for this one
        commit: still atomic, and synced by the next durable commit, but a power cut may undo
        it), for tables nothing reads until a later durable commit makes them live (a
        rebuild's tables before their swap). Like `write_transaction`, `work` must not touch
        the events table.
        """
        if self._writer_task is None or self._closing:
            raise StoreUnavailable("the SQLite event store is not open")
        self._guard.check()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_SyncTransaction(work, future, durable))
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
            if (
                self._head >= self._learn_at
                and self._codec.dictionary is None
                and self._learning is None
            ):
                self._learn_at = self._head + self._learn_after
                self._learning = asyncio.create_task(self._learn_dictionary())
            first = self._queue.popleft()
            if isinstance(first, _Transaction):
                await self._run_transaction(first)
                continue
            batch = [first]
            while (
                len(batch) < _MAX_BATCH and self._queue and isinstance(self._queue[0], QueuedAppend)
            ):
                item = self._queue.popleft()
                assert isinstance(item, QueuedAppend)
                batch.append(item)
            began = time.perf_counter()
            await self._commit(batch)
            for observe in self.commit_observers:
                observe(len(batch), time.perf_counter() - began)

    async def _learn_dictionary(self) -> None:
        """Learn the payloads' dictionary from the log (sqlite_codec.py) beside the writer: the
        sample is read by the reader, the dictionary built in a thread of its own (tens of
        milliseconds, which in the writer held every append back: the slowest answers of a
        fresh database's first minute), and only its insert is a (short) write transaction.
        A failure only puts it off (payloads are stored as text meanwhile)."""
        reader = self._reader
        assert reader is not None
        try:
            rows = await reader.execute_fetchall(SAMPLE_SQL, (SAMPLE_EVENTS,))
            dictionary = await asyncio.to_thread(learned_dictionary, list(rows))
            if dictionary is None:
                return
            learned = await self.write_transaction_now(
                functools.partial(store_dictionary, dictionary)
            )
        except Exception:
            log.warning("could not learn a dictionary for the payloads in %s", self.path)
            return
        finally:
            self._learning = None
        self._codec.learn_dictionaries(learned)

    async def _run_transaction(self, job: _Transaction) -> None:
        writer = self._writer
        assert writer is not None
        try:
            self._guard.check()  # one stat per transaction: never commit into a replaced file
            if isinstance(job, _SyncTransaction):
                work = cast(Callable[[sqlite3.Connection], Any], job.work)
                result = await run_on(
                    writer, functools.partial(self._transact_now, work, job.durable)
                )
            else:
                run = cast(Callable[[aiosqlite.Connection], Awaitable[Any]], job.work)
                if self._relaxed:
                    await run_on(writer, self._sync_fully)
                await writer.execute("BEGIN IMMEDIATE")
                result = await run(writer)
                await writer.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error, ValueError):
                await writer.execute("ROLLBACK")
            self._guard.failed(exc)
            if not job.future.done():
                if isinstance(exc, sqlite3.Error):
                    failure: Exception = StoreUnavailable(f"write to {self.path} failed: {exc}")
                    failure.__cause__ = exc
                else:
                    failure = exc
                job.future.set_exception(failure)
            return
        self._guard.succeeded()
        if not job.future.done():
            job.future.set_result(result)

    def _transact_now(
        self, work: Callable[[sqlite3.Connection], T], durable: bool, conn: sqlite3.Connection
    ) -> T:
        """In the writer's thread: `work(conn)` in a write transaction of its own, committed;
        rolled back if it raises. Not `durable`: committed at synchronous=NORMAL, and FULL
        restored after it (or, should that fail, before the next durable commit)."""
        if durable:
            self._sync_fully(conn)
        else:
            self._relaxed = True
            conn.execute("PRAGMA synchronous = NORMAL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        finally:
            if not durable:
                self._sync_fully(conn)
        return result

    def _sync_fully(self, conn: sqlite3.Connection) -> None:
        """In the writer's thread: its commits sync the log file again (synchronous=FULL), if
        a transaction that was not durable relaxed that. Every durable commit (each group
        commit of appends, each durable transaction) calls this first: if it fails, that
        commit fails too, and nothing is acknowledged that is not on disk."""
        if self._relaxed:
            conn.execute("PRAGMA synchronous = FULL")
            self._relaxed = False

    async def _commit(self, batch: list[QueuedAppend]) -> None:
        writer = self._writer
        assert writer is not None
        try:
            self._guard.check()  # one stat per batch: never commit into a replaced file
            # The whole transaction in one hand-over to the writer's thread: its statements,
            # the chain and the rows are made there, and the caller waits for one wake-up.
            plan, committed = await run_on(writer, functools.partial(self._commit_now, batch))
            if committed is not None:
                committed()
        except Exception as exc:  # the writer must survive anything, or every append would hang
            self._guard.failed(exc)
            failure = (
                exc
                if isinstance(exc, StoreUnavailable)
                else StoreUnavailable(f"append to {self.path} failed: {exc}")
            )
            fail(batch, failure)
            return
        self._head = max(self._head, plan.head)
        settle(batch, plan.outcomes)
        if plan.inserts:
            self._guard.succeeded()
            self._changed.set()
            self._changed = asyncio.Event()

    def _commit_now(
        self, batch: list[QueuedAppend], conn: sqlite3.Connection
    ) -> tuple[BatchPlan, Callable[[], None] | None]:
        """One group commit, in the writer's thread: each append checked against its stream's
        version, the accepted ones chained and inserted with their keys' rows, committed at
        synchronous=FULL (each acknowledged append is on disk); rolled back if anything fails.
        Returns the plan and what the codec learns once committed (for the loop's thread)."""
        self._sync_fully(conn)  # whatever a transaction before it asked
        conn.execute("BEGIN IMMEDIATE")
        try:
            versions: dict[str, int] = {}
            for stream in {item.stream_id for item in batch}:
                # One stream at a time: MAX over one stream is a single index probe, where a
                # GROUP BY over several walks every version of each.
                found = conn.execute(_STREAM_VERSION, (stream,)).fetchone()[0]
                if found is not None:
                    versions[stream] = found
            head, previous = _head_of(conn.execute(_LAST_EVENT).fetchall())
            plan = plan_batch(batch, versions, head, previous, datetime.now(UTC).isoformat())
            committed = None
            if plan.inserts:
                # The plan holds the accepted appends' events in batch order. Their payloads are
                # packed here, not before queueing: zlib lets go of the GIL for each deflate call
                # (two a payload), and on the event loop's thread each was a hand-over of the GIL
                # that the loop then waited to get back from the writer and worker threads, under
                # load longer than the deflate took. Here those waits overlap the loop's work
                # (bench/bench_engine.py, 3 runs each side by side: 465-479 -> 502-522 workflows/s).
                pack = self._codec.pack_payload
                payloads = [
                    pack(event[1])
                    for item, outcome in zip(batch, plan.outcomes, strict=True)
                    if isinstance(outcome, AppendResult)
                    for event in item.events
                ]
                stored, committed = compact_rows(conn, self._codec, plan.inserts, payloads)
                conn.executemany(INSERT, stored)
            if plan.keys:
                conn.executemany(INSERT_KEY, plan.keys)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return plan, committed

    async def append_streams(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append every part in one write transaction; a conflict rolls all of them back.

        Committed on its own between two group commits, like `write_transaction` work.
        """
        parts = [
            (
                a.stream_id,
                a.expected_version,
                [(e.type, *encode_for_storage(e), e.schema_version) for e in a.events],
            )
            for a in appends
        ]
        payloads = [self._codec.pack_payload(row[1]) for _, _, events in parts for row in events]

        committed: list[Callable[[], None]] = []

        def insert(conn: sqlite3.Connection) -> list[AppendResult]:
            head, previous = _head_of(conn.execute(_LAST_EVENT).fetchall())
            recorded_at = datetime.now(UTC).isoformat()
            versions: dict[str, int] = {}
            inserts: list[tuple[object, ...]] = []
            results: list[AppendResult] = []
            for stream_id, expected, events in parts:
                if stream_id not in versions:
                    found = conn.execute(_STREAM_VERSION, (stream_id,)).fetchone()[0]
                    versions[stream_id] = int(found or 0)
                if versions[stream_id] != expected:
                    raise ConcurrencyConflict(stream_id, expected, versions[stream_id])
                head, previous = chain_rows(
                    inserts, stream_id, expected, events, head, previous, recorded_at
                )
                versions[stream_id] = expected + len(events)
                results.append(AppendResult(version=versions[stream_id], position=head))
            if inserts:
                stored, done = compact_rows(conn, self._codec, inserts, payloads)
                conn.executemany(INSERT, stored)
                committed.append(done)
            return results

        results = await self.write_transaction_now(insert)
        for done in committed:
            done()
        if results and results[-1].position > self._head:
            self._head = results[-1].position
            self._changed.set()
            self._changed = asyncio.Event()
        return results

    async def read_stream(
        self, stream_id: str, up_to_version: int | None = None
    ) -> list[RecordedEvent]:
        """The stream's events in version order.

        Read on the event loop's thread, through a connection that never waits for a lock: one
        indexed read of a stream's rows costs less than handing it to the reader's thread and
        back (the two thread wake-ups of that hand-over are most of a short read's time). At
        most _ROWS_NOW rows are read so; the rest of a longer stream, and a read that finds the
        database busy, go to the reader's thread.
        """
        found: list[RecordedEvent] = []
        after = 0
        direct = self._direct
        if direct is not None:
            try:
                rows = direct.execute(
                    _stream_sql(up_to_version, limited=True),
                    (stream_id, 0, *_bound(up_to_version), _ROWS_NOW),
                ).fetchall()
                found = decode_rows_now(direct, rows, self._codec.events, self._codec)
            except sqlite3.Error:
                found = []  # busy, or failing: the reader's thread reads it, or says why not
            else:
                if len(rows) < _ROWS_NOW:
                    return found
                after = found[-1].version
        params = (stream_id, after, *_bound(up_to_version))
        rest = await self._read_events(_stream_sql(up_to_version), params)
        return found + rest if found else rest

    async def read_all(
        self,
        after: int = 0,
        limit: int = 1000,
        *,
        event_type: str | None = None,
        stream_id: str | None = None,
    ) -> list[RecordedEvent]:
        """Events past `after` in position order, optionally of one type or stream."""
        where: list[str] = ["position > ?"]
        params: list[object] = [after]
        if event_type is not None:
            type_id = await self._type_id(event_type)
            if type_id is None:
                where.append("type = ?")
                params.append(event_type)
            else:  # rows from before schema 3 name their type
                where.append("(type = ? OR type = ?)")
                params += [type_id, event_type]
        if stream_id is not None:
            where.append("stream_id = ?")
            params.append(stream_id)
        sql = f"SELECT {COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY position LIMIT ?"
        return await self._read_events(sql, (*params, limit))

    async def read_for_folding(self, after: int, limit: int) -> list[FoldingEvent]:
        """Up to `limit` events past `after`, with only what a fold needs of each (a rebuild's
        reads: no metadata, time or hash to decode)."""
        return await self._decoded_on_reader(
            _FOLDING_SQL, (after, limit), self._reader_codec.folding
        )

    async def _read_events(self, sql: str, params: Sequence[object]) -> list[RecordedEvent]:
        """The events `sql` selects, read and decoded in the reader's thread with a codec of
        that thread's own, in one hand-over (lookups the rows need and the codec lacks are
        loaded there too): the event loop's thread only gets the events."""
        return await self._decoded_on_reader(sql, params, self._reader_codec.events)

    async def _decoded_on_reader(
        self,
        sql: str,
        params: Sequence[object],
        decode: Callable[[Sequence[Sequence[Any]]], list[T]],
    ) -> list[T]:
        """`decode` (a method of the reader's codec) of the rows `sql` selects, read and decoded
        in the reader's thread in one hand-over."""
        reader = self._reader
        if reader is None:
            raise StoreUnavailable("the SQLite event store is not open")
        codec = self._reader_codec

        def read(conn: sqlite3.Connection) -> list[T]:
            rows = conn.execute(sql, params).fetchall()
            return decode_rows_now(conn, rows, decode, codec)

        try:
            return await run_on(reader, read)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"read from {self.path} failed: {exc}") from exc

    async def _type_id(self, name: str) -> int | None:
        """The id a type's name is stored under, if it has one."""
        known = self._codec.type_ids.get(name)
        if known is None:
            found = await self._read("SELECT id, name FROM event_types WHERE name = ?", (name,))
            self._codec.learn_types(found)
            known = self._codec.type_ids.get(name)
        return known

    async def import_events(self, events: Iterable[RecordedEvent]) -> None:
        """Copy events from another log (positions, times, hashes kept), checking each one.

        All of them in one transaction: if any is refused, none is stored.
        """

        committed: list[Callable[[], None]] = []

        async def write(conn: aiosqlite.Connection, values: list[tuple[object, ...]]) -> None:
            payloads = [self._codec.pack_payload(str(row[4])) for row in values]
            stored, done = await run_on(
                conn,
                functools.partial(
                    compact_rows, codec=self._codec, inserts=values, payloads=payloads
                ),
            )
            await conn.executemany(INSERT, stored)
            committed.append(done)

        async def insert(conn: aiosqlite.Connection) -> None:
            head, previous = await _last_event(conn)
            versions: dict[str, int] = {}
            values: list[tuple[object, ...]] = []
            for event in events:
                if event.stream_id not in versions:
                    found = await conn.execute_fetchall(_STREAM_VERSION, (event.stream_id,))
                    versions[event.stream_id] = int(next(iter(found))[0] or 0)
                head, previous = check_continues(event, head, previous, versions)
                values.append((*event.stored_fields().values(), event.hash))
                if len(values) >= 5000:
                    await write(conn, values)
                    values = []
            if values:
                await write(conn, values)

        await self.write_transaction(insert)
        for done in committed:
            done()
        self._head = await self._read_head()
        self._changed.set()
        self._changed = asyncio.Event()

    async def read_chain(self, after: int, limit: int) -> list[ChainRow]:
        """Up to `limit` events past `after` as the chain reads them (chain.ChainRow), read and
        decoded in the reader's thread with a codec of their own: for `verify`, which checks
        every event's hash without needing it as a RecordedEvent."""
        return await self._decoded_on_reader(_PAGE_SQL, (after, limit), self._reader_codec.chained)

    async def read_idempotency(self, key: str) -> IdempotencyRecord | None:
        """The key's row (see sqlite_keys.py), if any."""
        rows = await self._read(SELECT_KEY, (key,))
        return row_to_record(rows[0]) if rows else None

    async def save_idempotent_answer(
        self, key: str, request_hash: bytes, status: int, body: bytes
    ) -> None:
        """Store the answer beside the key, in a write transaction of its own."""
        await self.write_transaction(
            lambda conn: save_answer(conn, key, request_hash, status, body)
        )

    async def purge_idempotency(self, created_before: float) -> int:
        """Delete the keys created before `created_before`."""
        return await self.write_transaction(lambda conn: purge(conn, created_before))

    async def next_id(self, kind: str, after: int) -> int | None:
        """None: one process has this log, and its command services count ids themselves."""
        return None

    def part_source(self) -> PartSource:
        """The file of the log, which other processes may read (base.PartedLog)."""
        return PartSource(self.path, None, self.path)

    async def head_position(self) -> int:
        """The last committed position, including other processes' commits."""
        self._head = max(self._head, await self._read_head())
        return self._head

    async def health_problem(self) -> str | None:
        """Why writes are refused or failing now (a sentence), or None while they work.

        After a write failed for want of space, one small write (the schema version, unchanged)
        is tried first, so health recovers once space is freed even if no command comes; at
        most one such write every _PROBE_INTERVAL seconds, however often health is asked.
        """
        if self._guard.replaced() is None and self._guard.write_failure is not None:
            now = time.monotonic()
            if now - self._last_probe < _PROBE_INTERVAL:
                return self._guard.problem()
            self._last_probe = now
            with contextlib.suppress(StoreUnavailable):
                await self.write_transaction(_probe)
        return self._guard.problem()

    async def _read_head(self) -> int:
        rows = await self._read("SELECT COALESCE(MAX(position), 0) FROM events", ())
        return int(rows[0][0])

    async def wait_for_events(self, after: int, timeout: float) -> bool:
        """Wake on our own commits at once; look at the file for other writers on timeout."""
        changed = self._changed
        if self._head > after:
            return True
        # asyncio.timeout, not wait_for: see InMemoryEventStore.wait_for_events.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await changed.wait()
        if self._head > after:
            return True
        return await self.head_position() > after

    async def _read(self, sql: str, params: Sequence[object]) -> list[sqlite3.Row]:
        reader = self._reader
        if reader is None:
            raise StoreUnavailable("the SQLite event store is not open")
        try:
            return list(await reader.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"read from {self.path} failed: {exc}") from exc


async def _last_event(conn: aiosqlite.Connection) -> tuple[int, str]:
    """The log's head and its hash (0 and GENESIS for an empty log), in a transaction."""
    return _head_of(await conn.execute_fetchall(_LAST_EVENT))


def _head_of(rows: Iterable[Sequence[Any]]) -> tuple[int, str]:
    """The head and its hash from the rows of _LAST_EVENT (0 and GENESIS for none)."""
    for position, hash_ in rows:
        return int(position), unpack_hash(hash_)
    return 0, GENESIS


def _direct_reader(path: str) -> sqlite3.Connection:
    """A plain read-only connection for reads on the event loop's thread: it never waits for a
    lock (a busy database is read by the reader's thread instead, which may wait)."""
    try:
        conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"cannot open SQLite database {path!r}: {exc}") from exc
    try:
        conn.execute("PRAGMA query_only = 1")
    except sqlite3.Error as exc:
        conn.close()
        raise StoreUnavailable(f"cannot open SQLite database {path!r}: {exc}") from exc
    return conn


def _stream_sql(up_to_version: int | None, *, limited: bool = False) -> str:
    """The events of a stream past a version (and up to one), in version order."""
    bounded = "" if up_to_version is None else " AND version <= ?"
    limit = " LIMIT ?" if limited else ""
    return (
        f"SELECT {COLUMNS} FROM events WHERE stream_id = ? AND version > ?{bounded} "
        f"ORDER BY version{limit}"
    )


def _bound(up_to_version: int | None) -> tuple[int, ...]:
    return () if up_to_version is None else (up_to_version,)
