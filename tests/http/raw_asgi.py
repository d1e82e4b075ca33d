"""A bare ASGI client for requests no polite client would send, and for endless event streams.

httpx (under Starlette's TestClient) checks and normalizes what it sends: it encodes header
values, sets Content-Length itself and percent-encodes the path. A server hands the app whatever
bytes arrived, so the tests that fuzz inputs build the ASGI scope themselves: the path, query
string and header values go in as raw bytes, the body in chunks. An event stream never ends, so
its reader disconnects after `stream_read` seconds, as a client going away would.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.types import ASGIApp, Message

#: How long one call may take before it counts as hanging.
CALL_DEADLINE = 10.0


@dataclass
class RawAnswer:
    """What the app answered: status, headers and the body read."""

    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    #: The exception the app raised, if it raised one (a server would log it, and answer 500
    #: if it had not answered yet).
    raised: BaseException | None = None

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), decoded as latin-1."""
        wanted = name.lower().encode()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    def json(self) -> Any:
        """The body decoded as JSON (DecodeError if it is not JSON)."""
        return msgspec.json.decode(self.body)


def quote_segment(segment: str) -> bytes:
    """A path segment percent-encoded as a client would send it (UTF-8, nothing left bare)."""
    return urllib.parse.quote(segment, safe="", errors="surrogatepass").encode("ascii")


async def call(
    app: ASGIApp,
    method: str,
    raw_path: bytes,
    *,
    query: bytes = b"",
    headers: Sequence[tuple[bytes, bytes]] = (),
    body_chunks: Sequence[bytes] = (b"",),
    stream_read: float = 0.05,
) -> RawAnswer:
    """Send one request to `app` as a server would and collect the answer.

    `raw_path` is the path as it came over the wire (percent-encoded); `path` in the scope is
    its decoded form, as uvicorn makes it (invalid UTF-8 replaced).
    """
    path = urllib.parse.unquote(raw_path.decode("latin-1"), errors="replace")
    scope: dict[str, Any] = {
        "type": "http",
        # spec 2.3: Starlette then listens for the disconnect while it streams.
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": raw_path,
        "root_path": "",
        "query_string": query,
        "headers": [(name.lower(), value) for name, value in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    pending: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": index < len(body_chunks) - 1}
        for index, chunk in enumerate(body_chunks)
    ]
    gone = asyncio.Event()
    answer = RawAnswer(status=0)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            if (answer.header("content-type") or "").startswith("text/event-stream"):
                asyncio.get_running_loop().call_later(stream_read, gone.set)
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")
            if not message.get("more_body", False):
                gone.set()

    try:
        async with asyncio.timeout(CALL_DEADLINE):
            await app(scope, receive, send)
    except Exception as exc:  # Starlette re-raises after its 500 answer, for the server to log
        answer.raised = exc
        if answer.status == 0:
            answer.status = 500
    finally:
        gone.set()
    return answer
