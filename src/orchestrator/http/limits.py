"""Request limits at the ASGI level: header size, body size, and how long a body may take.

- Headers over MAX_HEADER_BYTES are answered 431. The server's HTTP protocol
  (http/connections.py) already cuts a head that grows past the limit while it arrives, so it is
  never buffered whole; this catches a head that arrived in one piece, and serves the ASGI app
  under any server (the tests' client included).
- A body over MAX_BODY_BYTES is answered 413 before it is read in full.
- A body that trickles in slower than CLIENT_TIMEOUT_SECONDS is answered 408 and the connection
  closed: otherwise one slow client holds a connection, a task and its buffer for as long as it
  likes. The deadline only covers reading the body; waiting for a disconnect afterwards (an
  event stream does) is not limited.
"""

from __future__ import annotations

import asyncio

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.http.errors import ClientTooSlow, PayloadTooLarge, error_response

#: What a request line adds around the method and target: spaces, " HTTP/1.1", CRLF.
_REQUEST_LINE_EXTRA = len("  HTTP/1.1\r\n")


#: Set in a scope by the server's own protocol (http/connections.py), which counted the head's
#: bytes as they arrived: the middleware need not count them again.
HEAD_CHECKED = "orchestrator.head_checked"


def head_size(scope: Scope) -> int:
    """The size in bytes of the request line and headers as the client sent them."""
    target = len(scope.get("raw_path") or scope["path"].encode())
    query = scope.get("query_string") or b""
    size = len(scope["method"]) + target + (len(query) + 1 if query else 0)
    size += _REQUEST_LINE_EXTRA + 2  # and the blank line that ends the head
    return size + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


def header_refusal(scope: Scope, max_bytes: int) -> Response | None:
    """The 431 answer if the request line and headers are over `max_bytes`, else None (also when
    the server counted them already). The app's outermost check (app.py) and the fast read
    path's first (fast_reads.py)."""
    if HEAD_CHECKED in scope:
        return None
    size = head_size(scope)
    if size <= max_bytes:
        return None
    detail = (
        f"the request line and headers are {size} bytes, over the limit of "
        f"{max_bytes} bytes (MAX_HEADER_BYTES)"
    )
    return error_response(431, "headers_too_large", detail, headers={"Connection": "close"})


class BodyLimitMiddleware:
    """Refuses a declared Content-Length over the limit at once; counts undeclared bodies; and,
    with a `timeout`, refuses a body that has not arrived whole within it."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, with a receive channel that stops at the limits."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = body_headers(scope)
        if declared is not None and declared > self.max_bytes:
            too_large = PayloadTooLarge(declared, self.max_bytes)
            await error_response(413, "payload_too_large", str(too_large))(scope, receive, send)
            return
        if declared is None and not chunked and scope["method"] in ("GET", "HEAD"):
            # No read route reads a body: the most common request passes without a receive
            # wrapper to build.
            await self.app(scope, receive, send)
            return
        received = 0
        complete = False
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout

        async def limited_receive() -> Message:
            nonlocal received, complete
            if complete or deadline is None:
                message = await receive()
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    assert self.timeout is not None
                    # Raised inside the route's body read, so the app's error table answers it.
                    raise ClientTooSlow(self.timeout) from None
            if message["type"] == "http.request":
                complete = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(received, self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


def body_headers(scope: Scope) -> tuple[int | None, bool]:
    """The declared Content-Length (None if absent or malformed) and whether it is chunked."""
    declared: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = None  # the server refuses a malformed length itself
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked
