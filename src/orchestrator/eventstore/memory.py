"""An in-memory event store for tests and throw-away runs; same contract as the databases."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

import msgspec

from orchestrator.eventstore.base import (
    AppendResult,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    check_continues,
    encode_for_storage,
)
from orchestrator.eventstore.chain import GENESIS, event_hash
from orchestrator.eventstore.errors import ConcurrencyConflict
from orchestrator.eventstore.keys import IdempotencyClaim, IdempotencyRecord, record_of
from orchestrator.eventstore.leases import Fence


class InMemoryEventStore:
    """Keeps the log in a list; events are frozen, and there is no way to change one."""

    def __init__(self) -> None:
        self._log: list[RecordedEvent] = []
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._changed = asyncio.Event()
        self._keys: dict[str, IdempotencyRecord] = {}
        #: Told each append as a commit of one (metrics; memory has no batches to report).
        self.commit_observers: list[Callable[[int, float], None]] = []

    async def open(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to release."""

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        idempotency: IdempotencyClaim | None = None,
        fence: Fence | None = None,
    ) -> AppendResult:
        """Append atomically if the stream is at `expected_version`, with the key if given.

        No lease applies here (`fence` is accepted for the protocol's sake): one process holds
        this log, so no other can take an aggregate over.
        """
        part = StreamAppend(stream_id=stream_id, expected_version=expected_version, events=events)
        result = (await self.append_streams([part]))[0]
        for observe in self.commit_observers:
            observe(1, 0.0)
        if idempotency is not None:  # no await since the append: the two are one step
            self._keys[idempotency.key] = record_of(
                idempotency, stream_id, result.version, result.position
            )
        return result

    async def read_idempotency(self, key: str) -> IdempotencyRecord | None:
        """The recorded key, if any."""
        return self._keys.get(key)

    async def save_idempotent_answer(
        self, key: str, request_hash: bytes, status: int, body: bytes
    ) -> None:
        """Keep the answer beside the key, if the key is still that request's."""
        record = self._keys.get(key)
        if record is not None and record.request_hash == request_hash:
            self._keys[key] = msgspec.structs.replace(record, status=status, body=body)

    async def purge_idempotency(self, created_before: float) -> int:
        """Forget keys created before `created_before`."""
        expired = [k for k, r in self._keys.items() if r.created_at < created_before]
        for key in expired:
            del self._keys[key]
        return len(expired)

    async def append_streams(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append every part, each at its expected version, or none of them."""
        versions: dict[str, int] = {}
        for part in appends:
            actual = versions.get(part.stream_id, len(self._streams.get(part.stream_id, [])))
            if actual != part.expected_version:
                raise ConcurrencyConflict(part.stream_id, part.expected_version, actual)
            versions[part.stream_id] = actual + len(part.events)
        # Encoded before anything is stored, so a refused event leaves the log as it was.
        encoded = [[(e, *encode_for_storage(e)) for e in part.events] for part in appends]
        now = datetime.now(UTC)
        head, previous = self._head(), self._log[-1].hash if self._log else GENESIS
        recorded: list[RecordedEvent] = []
        results: list[AppendResult] = []
        versions.clear()
        for part, stored in zip(appends, encoded, strict=True):
            version = versions.get(part.stream_id, part.expected_version)
            for event, data, metadata in stored:
                head, version = head + 1, version + 1
                previous = event_hash(
                    previous,
                    position=head,
                    stream_id=part.stream_id,
                    version=version,
                    type=event.type,
                    data=data,
                    metadata=metadata,
                    recorded_at=now.isoformat(),
                    schema_version=event.schema_version,
                )
                recorded.append(
                    RecordedEvent(
                        position=head,
                        stream_id=part.stream_id,
                        version=version,
                        type=event.type,
                        data=event.data,
                        metadata=dict(event.metadata),
                        recorded_at=now,
                        schema_version=event.schema_version,
                        hash=previous,
                    )
                )
            versions[part.stream_id] = version
            results.append(AppendResult(version=version, position=head))
        if recorded:
            self._store(recorded)
        return results

    async def import_events(self, events: Iterable[RecordedEvent]) -> None:
        """Copy events from another log, checking each; if any is refused, none is stored."""
        events = list(events)
        head, previous = self._head(), self._log[-1].hash if self._log else GENESIS
        versions = {stream: len(events) for stream, events in self._streams.items()}
        for event in events:
            head, previous = check_continues(event, head, previous, versions)
        for event in events:
            self._store([event])

    def _store(self, recorded: list[RecordedEvent]) -> None:
        self._log.extend(recorded)
        for event in recorded:
            self._streams.setdefault(event.stream_id, []).append(event)
        self._changed.set()
        self._changed = asyncio.Event()

    def _head(self) -> int:
        return self._log[-1].position if self._log else 0

    async def read_stream(
        self, stream_id: str, up_to_version: int | None = None
    ) -> list[RecordedEvent]:
        """The stream's events in version order."""
        stream = self._streams.get(stream_id, [])
        return list(stream if up_to_version is None else stream[:up_to_version])

    async def read_all(
        self,
        after: int = 0,
        limit: int = 1000,
        *,
        event_type: str | None = None,
        stream_id: str | None = None,
    ) -> list[RecordedEvent]:
        """Events with a position greater than `after`, at most `limit`."""
        if event_type is not None or stream_id is not None:
            source = self._streams.get(stream_id, []) if stream_id is not None else self._log
            return [
                e
                for e in source
                if e.position > after and (event_type is None or e.type == event_type)
            ][:limit]
        return self._past(after, limit)

    async def read_for_folding(self, after: int, limit: int) -> list[RecordedEvent]:
        """As `read_all(after, limit)`: in memory, whole events cost nothing more to read."""
        return self._past(after, limit)

    def _past(self, after: int, limit: int) -> list[RecordedEvent]:
        # Positions only grow, so the first event past `after` is found by bisection.
        low, high = 0, len(self._log)
        while low < high:
            middle = (low + high) // 2
            if self._log[middle].position <= after:
                low = middle + 1
            else:
                high = middle
        return self._log[low : low + limit]

    async def next_id(self, kind: str, after: int) -> int | None:
        """None: one process has this log, and its command services count ids themselves."""
        return None

    async def head_position(self) -> int:
        """The last position, 0 when empty."""
        return self._head()

    async def health_problem(self) -> str | None:
        """Memory takes every write: never a problem."""
        return None

    async def wait_for_events(self, after: int, timeout: float) -> bool:
        """Wait for an append past `after`."""
        changed = self._changed
        if self._head() > after:
            return True
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
        # arrives in the same loop turn as the event, and the waiter would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await changed.wait()
        return self._head() > after
