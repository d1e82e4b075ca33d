"""GET /execution/activity: workflows started and finished per minute over the last hour.

The figures come from the log's recent tail, not from a counter of the projector's: they are
right after a restart (the log is all there is to count) and alike on every process reading
one log, and nothing in the engine or the projections has to keep them.

Cheap however long the log is:

- Only the events that count are read: the log is asked for one event type at a time (started,
  launched, transitioned), each followed by a cursor of its own, so the store skips the step
  events (most of the log) without building them.
- The window's first event is found by a binary search over positions on `recorded_at`
  (positions have no gaps, so about log2(head) point reads), never by a scan from the start;
  the search runs again whenever the cursors fall far behind (an idle spell, a restart), so
  events older than the window are skipped, not read.
- Counts are kept per minute (at most WINDOW_MINUTES of them); a request reads only what was
  appended since the one before, and minutes that left the window are dropped.
- One request reads at most `budget` events and for at most `seconds` (then it answers with
  what it has: the reads yield to other requests between pages, but each page's counting holds
  the event loop). After a very busy hour the first requests answer with `complete: false` and
  the counts so far; each further request goes on from there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from orchestrator.domain.aggregates import WORKFLOW
from orchestrator.domain.events import WorkflowLaunched, WorkflowStarted, WorkflowTransitioned
from orchestrator.domain.states import is_terminal
from orchestrator.eventstore.base import EventStore, RecordedEvent
from orchestrator.http.request_types import ActivityQuery
from orchestrator.http.response_types import Activity, ActivityMinute
from orchestrator.http.responses import json_response

#: The longest window kept and answered (minutes).
WINDOW_MINUTES = 60
#: Most events one request reads...
READ_BUDGET = 100_000
#: ...and for how long (seconds).
READ_SECONDS = 0.2
#: Events read from the log at a time.
_PAGE = 2000

#: A workflow "starts" when it is started, or when a created one is launched (the log's type
#: names are the event classes' names).
_STARTED = (WorkflowStarted.__name__, WorkflowLaunched.__name__)
_TRANSITIONED = WorkflowTransitioned.__name__
#: The event types read, each with a cursor of its own.
_COUNTED = (*_STARTED, _TRANSITIONED)


def minute_of(moment: datetime) -> int:
    """Whole minutes since the epoch at `moment`."""
    return int(moment.timestamp()) // 60


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ActivityCounts:
    """Started and finished workflows per minute, counted from the log's recent tail."""

    def __init__(
        self,
        store: EventStore,
        *,
        clock: Callable[[], datetime] = _utc_now,
        budget: int = READ_BUDGET,
        seconds: float = READ_SECONDS,
    ) -> None:
        self._store = store
        self._clock = clock
        self._budget = budget
        self._seconds = seconds
        #: minute -> [started, finished]
        self._minutes: dict[int, list[int]] = {}
        #: The last position read, by event type; empty until the window has been searched for.
        self._cursors: dict[str, int] = {}
        # One reader at a time: two requests would count the same events twice.
        self._lock = asyncio.Lock()

    async def read(self, minutes: int = WINDOW_MINUTES) -> Activity:
        """The last `minutes` minutes (the current one included), oldest first."""
        async with self._lock:
            current = minute_of(self._clock())
            first = current - WINDOW_MINUTES + 1
            for minute in [m for m in self._minutes if m < first]:
                del self._minutes[minute]
            head = await self._store.head_position()
            behind = min(self._cursors.values(), default=0)
            if not self._cursors or head - behind > _PAGE:
                # New, or far behind: skip to the window's first event if that is further on.
                start = await self._first_position_from(behind + 1, head, first * 60)
                self._cursors = {
                    kind: max(self._cursors.get(kind, 0), start - 1) for kind in _COUNTED
                }
            budget = self._budget
            deadline = asyncio.get_running_loop().time() + self._seconds
            for kind in _COUNTED:
                budget = await self._read(kind, head, first, budget, deadline)
            position = min(self._cursors.values())
        shown = range(current - minutes + 1, current + 1)
        return Activity(
            minutes=[
                ActivityMinute(
                    minute=_moment(minute),
                    started=self._minutes.get(minute, (0, 0))[0],
                    finished=self._minutes.get(minute, (0, 0))[1],
                )
                for minute in shown
            ],
            since=_moment(shown[0]),
            until=_moment(current + 1),
            complete=position >= head,
            position=position,
        )

    async def _first_position_from(self, low: int, high: int, since: float) -> int:
        """The first position in [low, high] recorded at or after `since` (epoch seconds);
        high + 1 when there is none."""
        found = high + 1
        while low <= high:
            middle = (low + high) // 2
            event = await self._event_at(middle)
            if event is None:
                break
            if event.recorded_at.timestamp() >= since:
                found = min(found, event.position)
                high = middle - 1
            else:
                low = event.position + 1
        return found

    async def _event_at(self, position: int) -> RecordedEvent | None:
        events = await self._store.read_all(position - 1, 1)
        return events[0] if events else None

    async def _read(self, kind: str, head: int, first: int, budget: int, deadline: float) -> int:
        """Count the events of type `kind` past its cursor, up to `head`, `budget` events and
        the `deadline` (loop time); the budget left."""
        loop = asyncio.get_running_loop()
        while budget > 0 and self._cursors[kind] < head and loop.time() < deadline:
            count = min(_PAGE, budget)
            events = await self._store.read_all(self._cursors[kind], count, event_type=kind)
            for event in events:
                if event.position > head:
                    break
                self._count(event, first)
                self._cursors[kind] = event.position
            budget -= len(events)
            if len(events) < count or (events and events[-1].position > head):
                self._cursors[kind] = head  # nothing more of this type up to the head
        return budget

    def _count(self, event: RecordedEvent, first: int) -> None:
        minute = minute_of(event.recorded_at)
        if minute < first or WORKFLOW.parse_stream(event.stream_id) is None:
            return
        if event.type in _STARTED:
            self._minutes.setdefault(minute, [0, 0])[0] += 1
            return
        # A payload that does not decode counts as nothing; `orchestrator verify` reports it.
        with contextlib.suppress(msgspec.DecodeError, ValueError):
            decoded = WORKFLOW.decode(event.data, event.schema_version)
            # A run finishes when it reaches an end state (a retried one may finish again).
            if isinstance(decoded, WorkflowTransitioned) and is_terminal(decoded.to_state):
                self._minutes.setdefault(minute, [0, 0])[1] += 1


def _moment(minute: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(minutes=minute)


async def workflow_activity(request: Request, query: ActivityQuery) -> Response:
    """GET /execution/activity: workflows started and finished in each of the last minutes."""
    counts: ActivityCounts = request.app.state.activity
    return json_response(await counts.read(query.minutes))
