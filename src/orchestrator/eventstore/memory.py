"""An in-memory event store for tests and throw-away runs; same contract as the databases."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime

from orchestrator.eventstore.base import (
    AppendResult,
    NewEvent,
    RecordedEvent,
    encode_for_storage,
)
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
        for event in events:
            encode_for_storage(event)  # the same refusals as the databases
        if not events:
            return AppendResult(version=expected_version, position=len(self._log))
        now = datetime.now(UTC)
        recorded = [
            RecordedEvent(
                position=len(self._log) + i + 1,
                stream_id=stream_id,
                version=expected_version + i + 1,
                type=event.type,
                data=event.data,
                metadata=dict(event.metadata),
                recorded_at=now,
            )
            for i, event in enumerate(events)
        ]
        self._log.extend(recorded)
        self._streams[stream_id] = [*stream, *recorded]
        self._changed.set()
        self._changed = asyncio.Event()
        return AppendResult(version=recorded[-1].version, position=recorded[-1].position)

    async def read_stream(
        self, stream_id: str, up_to_version: int | None = None
    ) -> list[RecordedEvent]:
        """The stream's events in version order."""
        stream = self._streams.get(stream_id, [])
        return list(stream if up_to_version is None else stream[:up_to_version])

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events with a position greater than `after`, at most `limit`."""
        # Positions are 1, 2, 3, ... so a position is also an index into the list.
        start = max(after, 0)
        return self._log[start : start + limit]

    async def head_position(self) -> int:
        """The last position, 0 when empty."""
        return len(self._log)

    async def wait_for_events(self, after: int, timeout: float) -> bool:
        """Wait for an append past `after`."""
        changed = self._changed
        if len(self._log) > after:
            return True
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
        # arrives in the same loop turn as the event, and the waiter would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await changed.wait()
        return len(self._log) > after
