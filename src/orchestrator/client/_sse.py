"""GET /events/stream without the I/O: Server-Sent Events frames in, log events out, and
where to resume after a connection ends.

The server gives each frame `id:` = the event's log position and resumes a connection that
sends `Last-Event-ID` right after that position. A `Feed` remembers the last position it
handed out, so each reconnection asks for exactly the events after it: none lost, none twice
(an event at or before that position is dropped, should one ever arrive). A frame cut off by
a dropped connection is discarded and comes again on the next connection.
"""

from __future__ import annotations

import math

import httpx
import msgspec

from orchestrator.client._retry import (
    RETRY_STATUSES,
    RETRYABLE_ERRORS,
    RetryPolicy,
    describe,
    retry_after,
)
from orchestrator.client.errors import ConnectionFailed, UnexpectedResponse, api_error
from orchestrator.client.types import Event

PATH = "/events/stream"
#: Reconnections a stream makes in a row before it gives up: enough to ride out a restart.
STREAM_RETRY = RetryPolicy(max_retries=10, backoff=0.1, max_backoff=5.0)
_event = msgspec.json.Decoder(Event)


class Feed:
    """One stream's state across its connections: position, frame being read, failures."""

    def __init__(self, after: int | None, policy: RetryPolicy, idle_timeout: float) -> None:
        #: The position of the last event handed out (None until known: see `request`).
        self.position = after
        self.connections = 0
        self._policy = policy
        self._idle_timeout = idle_timeout
        #: Connection failures since the stream last showed it was alive.
        self._failures = 0
        self._lines_this_connection = 0
        self._data: list[str] = []

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """The request for the next connection: `?after=` the first time, `Last-Event-ID` on
        every reconnection. The read timeout is the longest silence tolerated."""
        if self.position is None:
            raise RuntimeError("the stream's starting position must be known before connecting")
        self.connections += 1
        self._lines_this_connection = 0
        self._data = []
        params: dict[str, int] = {}
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.connections == 1:
            params["after"] = self.position
        else:
            headers["Last-Event-ID"] = str(self.position)
        base = http.timeout
        timeout = httpx.Timeout(
            connect=base.connect, read=self._idle_timeout, write=base.write, pool=base.pool
        )
        return http.build_request("GET", PATH, params=params, headers=headers, timeout=timeout)

    def line(self, line: str) -> Event | None:
        """Take one line of the body; the event a completed frame carries, if any."""
        self._lines_this_connection += 1
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            # The first comment is the server's hello; any later one (keep-alive) shows a
            # stream that is alive, so the next failure starts the back-off afresh.
            if self._lines_this_connection > 1:
                self._failures = 0
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value.removeprefix(" "))
        # `id` and `event` repeat what the data holds (position, type); `retry` is not used:
        # the client's own back-off decides when to reconnect.
        return None

    def _dispatch(self) -> Event | None:
        if not self._data:
            return None
        data, self._data = "\n".join(self._data), []
        try:
            event = _event.decode(data)
        except msgspec.DecodeError as exc:
            raise UnexpectedResponse("GET", PATH, 200, f"{exc}: {data[:200]!r}") from exc
        assert self.position is not None
        if event.position <= self.position:
            return None
        self.position = event.position
        self._failures = 0
        return event

    def after_refusal(self, response: httpx.Response) -> float:
        """The pause before reconnecting after a non-200 answer (429 and 503 only, within the
        retries); the ApiError it stands for otherwise."""
        wanted = retry_after(response)
        if (
            response.status_code in RETRY_STATUSES
            and self._failures < self._policy.max_retries
            and (wanted is None or wanted <= self._policy.max_retry_after)
        ):
            self._failures += 1
            return self._policy.pause(self._failures, wanted)
        raise api_error(
            response.status_code,
            response.content,
            method="GET",
            path=PATH,
            retry_after=wanted,
            idempotency_key=None,
        )

    def after_end(self, url: str) -> float:
        """The pause before reconnecting after the server ended the stream (it stops)."""
        return self._after_failure(url, "the server closed the stream", None)

    def after_error(self, url: str, error: httpx.TransportError) -> float:
        """The pause before reconnecting after a transport error (one worth retrying)."""
        if not isinstance(error, RETRYABLE_ERRORS):
            raise ConnectionFailed("GET", url, self._failures + 1, describe(error)) from error
        return self._after_failure(url, describe(error), error)

    def _after_failure(self, url: str, reason: str, cause: BaseException | None) -> float:
        if self._failures >= self._policy.max_retries:
            raise ConnectionFailed("GET", url, self._failures + 1, reason) from cause
        self._failures += 1
        return self._policy.pause(self._failures)


def stream_url(http: httpx.Client | httpx.AsyncClient) -> str:
    """The stream's URL, for error messages."""
    return str(http.base_url.join(PATH))


def check_idle_timeout(idle_timeout: float) -> float:
    """The longest silence a stream tolerates before it reconnects, checked."""
    if not math.isfinite(idle_timeout) or idle_timeout <= 0:
        raise ValueError(f"idle_timeout must be a positive number of seconds, got {idle_timeout}")
    return idle_timeout
