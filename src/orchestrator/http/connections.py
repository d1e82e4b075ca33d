"""What one client connection may hold: uvicorn's httptools protocol with a deadline and a size
limit on request heads, and a connection cap that sheds idle connections first.

uvicorn alone reads a request head with no deadline (a connection that sends nothing, or one
byte a minute, stays open for ever), lets httptools buffer a header of any length whole (64 MB
and more), and past `limit_concurrency` answers in plain text while the idle connections that
filled it stay. Here, while a connection waits for a request head:

- the head must arrive whole within CLIENT_TIMEOUT_SECONDS of the connection opening or of the
  previous response (idle keep-alive time included); then 408 JSON, or a plain close if nothing
  was sent;
- it may grow to MAX_HEADER_BYTES (counted as it arrives, so at most one read more is ever
  buffered); then 431 JSON and close;
- past MAX_CONNECTIONS open connections, a new one closes the one that has waited longest for a
  head (an idle keep-alive or a slow client), so slow clients cannot lock others out; only when
  every connection is busy with a request is the request answered 503 JSON.

One timer per connection checks this, re-armed once per timeout period rather than per request
(a timer per request cost 7% of the requests per second). Request bodies get their deadline in
http/limits.py. The process's open-file limit is
raised to fit MAX_CONNECTIONS, or the cap lowered to fit it: an accept that fails for want of
file descriptors stalls every client.
"""

from __future__ import annotations

import logging
import math
import resource
from typing import Any, cast

import msgspec
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from orchestrator.http.errors import ErrorBody, error_response
from orchestrator.http.limits import HEAD_CHECKED
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

#: File descriptors kept for everything but client connections: the database and its WAL, the
#: log file, the listening socket, http_request tasks' own connections, the event loop.
FD_RESERVE = 64

_encoder = msgspec.json.Encoder()


class GuardedProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with a head deadline, a head size limit and idle-first shedding."""

    max_header_bytes = 16 * 1024
    client_timeout = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The cap is enforced here (JSON answers, idle connections shed first), not by uvicorn.
        self.max_connections = self.limit_concurrency
        self.limit_concurrency = None
        #: Loop time since which this connection waits for a request head; None mid-request.
        self.waiting_since: float | None = None
        self._head_bytes = 0
        self._head_timer: Any = None
        #: A request's head is in but not yet its whole body: what arrives is body, not head,
        #: even once the app has answered without reading it.
        self._body_pending = False

    def connection_made(self, transport: Any) -> None:
        """Start waiting for the first head, making room first if the server is full."""
        super().connection_made(transport)
        self._await_head()
        self._head_timer = self.loop.call_later(self.client_timeout, self._check_head)
        self._shed_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the head deadline with the connection."""
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Count head bytes as they arrive; refuse a head that grows past the limit.

        Only bytes between messages count: the rest of a body the app answered without reading
        (a 404, 413, ...) is no head."""
        if self.waiting_since is not None and not self._body_pending:
            self._head_bytes += len(data)
        super().data_received(data)
        if (
            self.waiting_since is not None
            and not self._body_pending
            and self._head_bytes > self.max_header_bytes
            and not self.transport.is_closing()
        ):
            self.refuse(
                431,
                "headers_too_large",
                f"the request line and headers are over the limit of {self.max_header_bytes} "
                "bytes (MAX_HEADER_BYTES)",
            )

    def on_headers_complete(self) -> None:
        """The head is in: no deadline until the response is sent; 503 if every connection is
        busy with a request."""
        self.waiting_since = None
        self._body_pending = True
        if self._over_cap():
            app, self.app = self.app, _too_many_connections(self.max_connections or 0)
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()
        # The bytes counted as they came (data_received) include the head, and may include a
        # body that came with it: under the limit, the head is too, and the header-limit layer
        # (`limits.header_refusal`, there for apps served otherwise) need not count it again.
        # Over it, the head may have come whole in the same read that passed the limit (a 40 KB
        # head on loopback does): that layer counts the head itself, and refuses it if over.
        if self._head_bytes <= self.max_header_bytes:
            cast(dict[str, Any], self.scope)[HEAD_CHECKED] = True

    def on_message_complete(self) -> None:
        """The whole body is in: what follows is the next head."""
        self._body_pending = False
        super().on_message_complete()

    def on_response_complete(self) -> None:
        """The connection waits for a head again: its idle time counts toward the deadline.

        Unless a pipelined request was queued behind this one: uvicorn starts it now, and a
        running request is not idle (no deadline, no head bytes, never shed)."""
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.pipeline or not (self.cycle is None or self.cycle.response_complete):
            self.waiting_since = None  # a queued request runs (or waits for its turn)
            return
        self._await_head()

    def _over_cap(self) -> bool:
        cap = self.max_connections
        if cap is None:
            return False
        if len(self.tasks) >= cap:
            return True
        # Connections just shed to make room are closing but not yet gone: they do not count.
        # Counted only past the cap, so a request normally costs nothing here.
        return len(self.connections) > cap and (
            sum(1 for c in self.connections if not c.transport.is_closing()) > cap
        )

    def refuse(self, status: int, code: str, detail: str) -> None:
        """Answer with a JSON error outside any request cycle, and close."""
        body = _encoder.encode(ErrorBody(error=code, detail=detail))
        head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n"
        self.transport.write(STATUS_LINE[status] + head % len(body) + b"\r\n" + body)
        self.transport.close()

    def _await_head(self) -> None:
        self.waiting_since = self.loop.time()
        self._head_bytes = 0

    def _check_head(self) -> None:
        if self.transport.is_closing():
            return
        waited = 0.0 if self.waiting_since is None else self.loop.time() - self.waiting_since
        if waited < self.client_timeout:  # busy with a request, or not waiting long yet
            self._head_timer = self.loop.call_later(self.client_timeout - waited, self._check_head)
            return
        if self._head_bytes == 0:
            self.transport.close()  # nothing was asked: nobody to answer
            return
        self.refuse(
            408,
            "request_timeout",
            f"the request head did not arrive within {self.client_timeout:g} s "
            "(CLIENT_TIMEOUT_SECONDS)",
        )

    def _shed_idle(self) -> None:
        cap = self.max_connections
        if cap is None or len(self.connections) <= cap:
            return
        waiting = [
            connection
            for connection in self.connections
            if isinstance(connection, GuardedProtocol)
            and connection is not self
            and connection.waiting_since is not None
            and not connection.transport.is_closing()
        ]
        if waiting:
            oldest = min(waiting, key=lambda connection: connection.waiting_since or 0.0)
            log.debug("%d connections open: closing one idle since %s", cap, oldest.waiting_since)
            oldest.transport.close()


def _too_many_connections(cap: int) -> Any:
    detail = (
        f"the server is busy with {cap} connections (MAX_CONNECTIONS); "
        "nothing was done, try again in 1 s"
    )
    return error_response(
        503, "too_many_connections", detail, headers={"Retry-After": "1", "Connection": "close"}
    )


def fit_open_files(max_connections: int) -> int:
    """Raise the open-file limit to fit `max_connections` (as far as the hard limit allows);
    the number of connections that fit then."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit to %d: %s", raised, exc)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return max_connections
    fitting = max(1, soft - FD_RESERVE)
    log.warning(
        "MAX_CONNECTIONS=%d is lowered to %d: the process may open only %d files",
        max_connections,
        fitting,
        soft,
    )
    return fitting


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.Config arguments for the connection limits and the shutdown grace."""
    protocol = type(
        "ServedProtocol",
        (GuardedProtocol,),
        {
            "max_header_bytes": settings.max_header_bytes,
            "client_timeout": settings.client_timeout_seconds,
        },
    )
    return {
        "http": protocol,
        "limit_concurrency": fit_open_files(settings.max_connections),
        # uvicorn takes whole seconds here.
        "timeout_keep_alive": max(1, math.ceil(settings.client_timeout_seconds)),
        # In-flight requests (a `next` waits for its step) get the grace too; one second more
        # lets a step that ends right at the deadline still be answered.
        "timeout_graceful_shutdown": math.ceil(settings.shutdown_grace_seconds) + 1,
    }
