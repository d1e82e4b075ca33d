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
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiosqlite

from orchestrator.eventstore.base import (
    AppendResult,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    check_continues,
    encode_for_storage,
)
from orchestrator.eventstore.chain import GENESIS, chain_rows
from orchestrator.eventstore.errors import ConcurrencyConflict, StoreUnavailable
from orchestrator.eventstore.group_commit import QueuedAppend, fail, plan_batch, settle
from orchestrator.eventstore.keys import IdempotencyClaim, IdempotencyRecord
from orchestrator.eventstore.leases import Fence
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
    row_to_event,
)
from orchestrator.eventstore.sqlite_schema import SCHEMA_VERSION as SCHEMA_VERSION

T = TypeVar("T")
_MAX_BATCH = 512


class _Transaction:
    __slots__ = ("future", "work")

    def __init__(
        self,
        work: Callable[[aiosqlite.Connection], Awaitable[Any]],
        future: asyncio.Future[Any],
    ) -> None:
        self.work = work
        self.future = future


#: Seconds between two write probes of health_problem: /health is public, and may be asked often.
_PROBE_INTERVAL = 5.0


async def _probe(conn: aiosqlite.Connection) -> None:
    await conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class SQLiteEventStore:
    """The event log in one SQLite file, append-only enforced by triggers."""

    def __init__(self, path: str, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
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
            await migrate(self._writer, self.path)
            self._reader = await connect(self.path, self._busy_timeout_ms)
            self._head = await self._read_head()
            self._guard.remember()  # the file, -wal and -shm are open by now
        except BaseException:
            await self._close_connections()
            raise
        self._closing = False
        self._writer_task = asyncio.create_task(self._write_loop(), name="sqlite-group-commit")

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close both connections."""
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
        self._guard.check()
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

    async def _write_loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._queued.clear()
                await self._queued.wait()
                continue
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

    async def _run_transaction(self, job: _Transaction) -> None:
        writer = self._writer
        assert writer is not None
        try:
            self._guard.check()  # one stat per transaction: never commit into a replaced file
            await writer.execute("BEGIN IMMEDIATE")
            result = await job.work(writer)
            await writer.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
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

    async def _commit(self, batch: list[QueuedAppend]) -> None:
        writer = self._writer
        assert writer is not None
        try:
            self._guard.check()  # one stat per batch: never commit into a replaced file
            await writer.execute("BEGIN IMMEDIATE")
            streams = sorted({item.stream_id for item in batch})
            marks = ",".join("?" * len(streams))
            rows = await writer.execute_fetchall(
                f"SELECT stream_id, MAX(version), NULL FROM events WHERE stream_id IN ({marks}) "
                "GROUP BY stream_id UNION ALL SELECT * FROM (SELECT NULL, position, hash "
                "FROM events ORDER BY position DESC LIMIT 1)",
                streams,
            )
            versions: dict[str, int] = {}
            head, previous = 0, GENESIS
            for stream, value, last_hash in rows:
                if stream is None:
                    head, previous = value, last_hash
                else:
                    versions[stream] = value
            plan = plan_batch(batch, versions, head, previous, datetime.now(UTC).isoformat())
            if plan.inserts:
                await writer.executemany(INSERT, plan.inserts)
            if plan.keys:
                await writer.executemany(INSERT_KEY, plan.keys)
            await writer.execute("COMMIT")
        except Exception as exc:  # the writer must survive anything, or every append would hang
            with contextlib.suppress(sqlite3.Error):
                await writer.execute("ROLLBACK")
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

        async def insert(conn: aiosqlite.Connection) -> list[AppendResult]:
            rows = await conn.execute_fetchall(
                "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
            )
            head, previous = next(iter(rows), (0, GENESIS))
            recorded_at = datetime.now(UTC).isoformat()
            versions: dict[str, int] = {}
            inserts: list[tuple[object, ...]] = []
            results: list[AppendResult] = []
            for stream_id, expected, events in parts:
                if stream_id not in versions:
                    found = await conn.execute_fetchall(
                        "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?",
                        (stream_id,),
                    )
                    versions[stream_id] = int(next(iter(found))[0])
                if versions[stream_id] != expected:
                    raise ConcurrencyConflict(stream_id, expected, versions[stream_id])
                head, previous = chain_rows(
                    inserts, stream_id, expected, events, head, previous, recorded_at
                )
                versions[stream_id] = expected + len(events)
                results.append(AppendResult(version=versions[stream_id], position=head))
            if inserts:
                await conn.executemany(INSERT, inserts)
            return results

        results = await self.write_transaction(insert)
        if results and results[-1].position > self._head:
            self._head = results[-1].position
            self._changed.set()
            self._changed = asyncio.Event()
        return results

    async def read_stream(
        self, stream_id: str, up_to_version: int | None = None
    ) -> list[RecordedEvent]:
        """The stream's events in version order."""
        if up_to_version is None:
            sql = f"SELECT {COLUMNS} FROM events WHERE stream_id = ? ORDER BY version"
            params: tuple[object, ...] = (stream_id,)
        else:
            sql = (
                f"SELECT {COLUMNS} FROM events WHERE stream_id = ? AND version <= ? "
                "ORDER BY version"
            )
            params = (stream_id, up_to_version)
        return [row_to_event(row) for row in await self._read(sql, params)]

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
            where.append("type = ?")
            params.append(event_type)
        if stream_id is not None:
            where.append("stream_id = ?")
            params.append(stream_id)
        sql = f"SELECT {COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY position LIMIT ?"
        return [row_to_event(row) for row in await self._read(sql, (*params, limit))]

    async def import_events(self, events: Iterable[RecordedEvent]) -> None:
        """Copy events from another log (positions, times, hashes kept), checking each one.

        All of them in one transaction: if any is refused, none is stored.
        """

        async def insert(conn: aiosqlite.Connection) -> None:
            rows = await conn.execute_fetchall(
                "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
            )
            head, previous = next(iter(rows), (0, GENESIS))
            versions: dict[str, int] = {}
            values: list[tuple[object, ...]] = []
            for event in events:
                if event.stream_id not in versions:
                    found = await conn.execute_fetchall(
                        "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream_id = ?",
                        (event.stream_id,),
                    )
                    versions[event.stream_id] = int(next(iter(found))[0])
                head, previous = check_continues(event, head, previous, versions)
                values.append((*event.stored_fields().values(), event.hash))
                if len(values) >= 5000:
                    await conn.executemany(INSERT, values)
                    values = []
            if values:
                await conn.executemany(INSERT, values)

        await self.write_transaction(insert)
        self._head = await self._read_head()
        self._changed.set()
        self._changed = asyncio.Event()

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
