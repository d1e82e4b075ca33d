"""History over HTTP: time travel, a workflow's events, the global log and its live SSE feed.

These read the log itself, not the projections: they answer "what happened", event by event.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from orchestrator.domain.aggregates import WORKFLOW, kind_of_stream
from orchestrator.eventstore.base import RecordedEvent
from orchestrator.history.replay import missing_version
from orchestrator.http.bounds import (
    FETCH_CHUNK,
    BoundedArray,
    list_response,
    max_response_bytes,
    next_page,
    truncation_headers,
)
from orchestrator.http.conversions import workflow_out
from orchestrator.http.errors import InvalidInput, VersionNotFound
from orchestrator.http.event_feed import EventFeed
from orchestrator.http.request_types import EventsQuery, StreamQuery, WorkflowReadQuery
from orchestrator.http.response_types import EventOut
from orchestrator.http.responses import (
    existing_workflow,
    json_response,
    runtime_of,
    workflow_response,
)

_encoder = msgspec.json.Encoder()
#: Events one SSE connection reads at a time: its memory stays bounded however slow it is.
_STREAM_PAGE = 200
#: A log position as Last-Event-ID carries it: ASCII digits only. `str.isdigit` would also take
#: '²' or Arabic-Indic digits, which `int` then refuses or reads as another number.
_POSITION = re.compile(r"[0-9]{1,19}")
_MAX_POSITION = 2**63 - 1


def last_event_id(request: Request) -> int | None:
    """The Last-Event-ID header as a log position (0..2**63-1), None if absent; else a 422."""
    raw = request.headers.get("last-event-id")
    if raw is None:
        return None
    if not _POSITION.fullmatch(raw) or int(raw) > _MAX_POSITION:
        raise InvalidInput(
            f"Last-Event-ID must be a log position (0 to 2**63-1 in ASCII digits), got {raw[:40]!r}"
        )
    return int(raw)


def sse_frame(event: RecordedEvent) -> bytes:
    """One event as its Server-Sent Events frame; `id:` is its position."""
    body = _encoder.encode(event_out(event))
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.position, event.type.encode(), body)


def event_out(recorded: RecordedEvent) -> EventOut:
    """A stored event as the API shows it; `data` is upcast to the current shape when known."""
    data: Any = None
    found = kind_of_stream(recorded.stream_id)
    if found is not None:
        # A payload that does not decode is shown as stored; `orchestrator verify` reports it.
        with contextlib.suppress(msgspec.DecodeError, ValueError):
            data = found[0].decode(recorded.data, recorded.schema_version)
    if data is None:
        data = msgspec.json.decode(recorded.data)
    return EventOut(
        position=recorded.position,
        stream_id=recorded.stream_id,
        version=recorded.version,
        type=recorded.type,
        data=data,
        metadata=recorded.metadata,
        recorded_at=recorded.recorded_at,
        schema_version=recorded.schema_version,
        hash=recorded.hash,
    )


async def get_workflow(request: Request, query: WorkflowReadQuery) -> Response:
    """GET /workflow/{id}: the current read model, or with `at_version` the state back then."""
    workflow = await existing_workflow(request)
    if query.at_version is None:
        return workflow_response(request, workflow)
    store = runtime_of(request).store
    recorded = await store.read_stream(WORKFLOW.stream_id(workflow.workflow_id), query.at_version)
    if len(recorded) < query.at_version:
        raise VersionNotFound(
            missing_version(workflow.workflow_id, query.at_version, len(recorded))
        )
    state = WORKFLOW.fold_recorded(recorded)
    assert state is not None
    return json_response(workflow_out(state))


async def _event_page(
    request: Request, after: int, limit: int | None, **where: str | None
) -> tuple[BoundedArray, int]:
    """Events past `after` (at most `limit`), read FETCH_CHUNK at a time, within
    MAX_RESPONSE_BYTES; with the position of the last one taken (`after` if none)."""
    store = runtime_of(request).store
    # Room for the rest of an EventPage around the array.
    page = BoundedArray(max_response_bytes(request) - 64)
    position, taken = after, 0
    while limit is None or taken < limit:
        count = FETCH_CHUNK if limit is None else min(FETCH_CHUNK, limit - taken)
        events = await store.read_all(
            position, count, event_type=where.get("event_type"), stream_id=where.get("stream")
        )
        for event in events:
            if not page.add(_encoder.encode(event_out(event))):
                return page, position
            position, taken = event.position, taken + 1
        if len(events) < count:
            break
    return page, position


async def workflow_events(request: Request) -> Response:
    """GET /workflow/{id}/events: every event of the workflow, in version order (cut short at
    MAX_RESPONSE_BYTES; the Link header then points at the rest in /events)."""
    workflow = await existing_workflow(request)
    stream = WORKFLOW.stream_id(workflow.workflow_id)
    page, last = await _event_page(request, 0, None, stream=stream)
    return list_response(page, f"/events?stream={stream}&after={last}")


async def list_events(request: Request, query: EventsQuery) -> Response:
    """GET /events: one page of the global log after a position (cut short at
    MAX_RESPONSE_BYTES: `next_after` is then the last event it holds)."""
    page, next_after = await _event_page(
        request, query.after, query.limit, event_type=query.type, stream=query.stream
    )
    head = await runtime_of(request).store.head_position()
    body = b'{"events":%b,"next_after":%d,"head":%d}' % (page.body(), next_after, head)
    response = Response(body, media_type="application/json")
    return truncation_headers(response, page, next_page(request, after=next_after))


async def stream_events(request: Request, query: StreamQuery) -> Response:
    """GET /events/stream: Server-Sent Events, one frame per event, `id:` = its position.

    A client that reconnects with Last-Event-ID gets exactly the events after it. Without it,
    `after` says where to start (default: only events from now on).
    """
    runtime = runtime_of(request)
    resume = last_event_id(request)
    if resume is not None:
        after = resume
    elif query.after is not None:
        after = query.after
    else:
        after = await runtime.store.head_position()
    keepalive = runtime.settings.sse_keepalive_seconds
    feed: EventFeed = request.app.state.event_feed
    if not feed.started:
        feed.start(await runtime.store.head_position())

    async def frames() -> AsyncIterator[bytes]:
        position = after
        feed.clients += 1
        try:
            yield b": connected\n\n"
            while not runtime.stopping.is_set():
                found = feed.frames_after(position)
                if found is None:  # further back than the shared buffer reaches: read the log
                    events = await runtime.store.read_all(position, _STREAM_PAGE)
                    if events:
                        yield b"".join(sse_frame(event) for event in events)
                        position = events[-1].position
                    continue
                chunk, last = found
                if chunk:  # every frame found goes out in one write, as the feed joined them
                    yield chunk
                    position = last
                    continue
                if not await feed.wait_past(position, keepalive) and not runtime.stopping.is_set():
                    yield b": keep-alive\n\n"
        finally:
            feed.clients -= 1

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(frames(), media_type="text/event-stream", headers=headers)
