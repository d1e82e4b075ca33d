"""An in-memory event store for tests and throw-away runs; same contract as the databases."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from orchestrator.eventstore.base import (
    AppendResult,
    NewEvent,
    RecordedEvent,
    check_continues,
    encode_for_storage,
)
from orchestrator.eventstore.chain import GENESIS, event_hash
from orchestrator.eventstore.errors import ConcurrencyConflict


class InMemoryEventStore:
    """Keeps the log in a list; events are frozen, and there is no way to change one."""

    def __init__(self) -> None:
        self._log: list[RecordedEvent] = []
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._changed = asyncio.Event()

    async def open(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to release."""

    async def append(
        self, stream_id: str, expected_version: int, events: Sequence[NewEvent]
    ) -> AppendResult:
        """Append atomically if the stream is at `expected_version`."""
        stream = self._streams.get(stream_id, [])
        if len(stream) != expected_version:
            raise ConcurrencyConflict(stream_id, expected_version, len(stream))
        stored = [(event, *encode_for_storage(event)) for event in events]  # same refusals
        if not events:
            return AppendResult(version=expected_version, position=self._head())
        now = datetime.now(UTC)
        previous = self._log[-1].hash if self._log else GENESIS
        recorded: list[RecordedEvent] = []
        for i, (event, data, metadata) in enumerate(stored):
            position, version = self._head() + i + 1, expected_version + i + 1
            previous = event_hash(
                previous,
                position=position,
                stream_id=stream_id,
                version=version,
                type=event.type,
                data=data,
                metadata=metadata,
                recorded_at=now.isoformat(),
                schema_version=event.schema_version,
            )
            recorded.append(
                RecordedEvent(
                    position=position,
                    stream_id=stream_id,
                    version=version,
                    type=event.type,
                    data=event.data,
                    metadata=dict(event.metadata),
                    recorded_at=now,
                    schema_version=event.schema_version,
                    hash=previous,
                )
            )
        self._store(recorded)
        return AppendResult(version=recorded[-1].version, position=recorded[-1].position)

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
        # Positions only grow, so the first event past `after` is found by bisection.
        low, high = 0, len(self._log)
        while low < high:
            middle = (low + high) // 2
            if self._log[middle].position <= after:
                low = middle + 1
            else:
                high = middle
        return self._log[low : low + limit]

    async def head_position(self) -> int:
        """The last position, 0 when empty."""
        return self._head()

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
