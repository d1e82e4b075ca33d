"""httpx transports that misbehave on purpose between the client and the real server.

Each wraps httpx's real transport and records what went through, so a test can check what the
client sent (keys, headers) as well as what the server ended up doing:

- `LoseAnswers`: the server handles a command, then its answer is lost as on a dropped
  connection (the client sees httpx.ReadError);
- `Busy`: the first requests get a 503 or 429 with Retry-After, without reaching the server;
- `CutStreams`: each of the first event streams is cut after its first event frame, in the
  middle of the next frame.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx

STREAM_PATH = "/events/stream"


def _lost(request: httpx.Request) -> httpx.ReadError:
    return httpx.ReadError("the connection dropped before the answer arrived", request=request)


def _busy(status: int, retry_after: str) -> httpx.Response:
    code = "too_busy" if status == 429 else "store_unavailable"
    return httpx.Response(
        status,
        headers={"Retry-After": retry_after},
        json={"error": code, "detail": "busy on purpose (tests/client/transports.py)"},
    )


class LoseAnswers(httpx.BaseTransport):
    """Lets the server handle every request, but loses the answers to the first `count`
    commands (POST, PUT, DELETE)."""

    def __init__(self, count: int = 1) -> None:
        self._inner = httpx.HTTPTransport()
        self.to_lose = count
        #: Every command sent, with the answer the server gave (lost or not).
        self.commands: list[tuple[httpx.Request, httpx.Response]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if request.method == "GET":
            return response
        response.read()
        self.commands.append((request, response))
        if self.to_lose > 0:
            self.to_lose -= 1
            raise _lost(request)
        return response

    def close(self) -> None:
        self._inner.close()


class AsyncLoseAnswers(httpx.AsyncBaseTransport):
    """`LoseAnswers` for the async client."""

    def __init__(self, count: int = 1) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.to_lose = count
        self.commands: list[tuple[httpx.Request, httpx.Response]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.method == "GET":
            return response
        await response.aread()
        self.commands.append((request, response))
        if self.to_lose > 0:
            self.to_lose -= 1
            raise _lost(request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class Busy(httpx.BaseTransport):
    """Answers the first `count` requests itself with `status` and Retry-After; forwards the
    rest to the server."""

    def __init__(self, count: int, *, status: int = 503, retry_after: str = "0") -> None:
        self._inner = httpx.HTTPTransport()
        self.to_refuse = count
        self.status = status
        self.retry_after = retry_after
        #: Every request the client sent, refused or forwarded.
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.to_refuse > 0:
            self.to_refuse -= 1
            return _busy(self.status, self.retry_after)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class AsyncBusy(httpx.AsyncBaseTransport):
    """`Busy` for the async client."""

    def __init__(self, count: int, *, status: int = 503, retry_after: str = "0") -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.to_refuse = count
        self.status = status
        self.retry_after = retry_after
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.to_refuse > 0:
            self.to_refuse -= 1
            return _busy(self.status, self.retry_after)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _cut_after_first_event(chunk: bytes) -> bytes | None:
    """`chunk` up to the middle of what follows its first whole event (the server sends every
    frame it has in one write), or None when it holds no whole event."""
    start = 0 if chunk.startswith(b"id: ") else chunk.find(b"\nid: ")
    if start < 0:
        return None
    end = chunk.find(b"\n\n", start)
    if end < 0:
        return None
    end += 2
    return chunk[: end + (len(chunk) - end) // 2]


class _CutBody(httpx.SyncByteStream):
    """A stream body that breaks off in the middle of what follows its first event."""

    def __init__(self, inner: httpx.SyncByteStream, on_close: list[bool]) -> None:
        self._inner = inner
        self._on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            cut = _cut_after_first_event(chunk)
            if cut is not None:
                yield cut
                break
            yield chunk
        raise httpx.ReadError("the stream's connection was cut")

    def close(self) -> None:
        self._on_close.append(True)
        self._inner.close()


class _AsyncCutBody(httpx.AsyncByteStream):
    """`_CutBody` for the async client."""

    def __init__(self, inner: httpx.AsyncByteStream, on_close: list[bool]) -> None:
        self._inner = inner
        self._on_close = on_close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            cut = _cut_after_first_event(chunk)
            if cut is not None:
                yield cut
                break
            yield chunk
        raise httpx.ReadError("the stream's connection was cut")

    async def aclose(self) -> None:
        self._on_close.append(True)
        await self._inner.aclose()


class _Recorded(httpx.SyncByteStream):
    """A stream body passed through unchanged, noting when it is closed."""

    def __init__(self, inner: httpx.SyncByteStream, on_close: list[bool]) -> None:
        self._inner = inner
        self._on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        yield from self._inner

    def close(self) -> None:
        self._on_close.append(True)
        self._inner.close()


class _AsyncRecorded(httpx.AsyncByteStream):
    """`_Recorded` for the async client."""

    def __init__(self, inner: httpx.AsyncByteStream, on_close: list[bool]) -> None:
        self._inner = inner
        self._on_close = on_close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        self._on_close.append(True)
        await self._inner.aclose()


class CutStreams(httpx.BaseTransport):
    """Forwards every request; cuts the first `count` event streams after their first event
    and notes every stream request and every stream body closed."""

    def __init__(self, count: int = 0) -> None:
        self._inner = httpx.HTTPTransport()
        self.to_cut = count
        self.stream_requests: list[httpx.Request] = []
        self.closed: list[bool] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        if request.url.path != STREAM_PATH:
            return response
        self.stream_requests.append(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        body: httpx.SyncByteStream = _Recorded(response.stream, self.closed)
        if self.to_cut > 0:
            self.to_cut -= 1
            body = _CutBody(response.stream, self.closed)
        return httpx.Response(response.status_code, headers=response.headers, stream=body)

    def close(self) -> None:
        self._inner.close()


class AsyncCutStreams(httpx.AsyncBaseTransport):
    """`CutStreams` for the async client."""

    def __init__(self, count: int = 0) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.to_cut = count
        self.stream_requests: list[httpx.Request] = []
        self.closed: list[bool] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if request.url.path != STREAM_PATH:
            return response
        self.stream_requests.append(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        body: httpx.AsyncByteStream = _AsyncRecorded(response.stream, self.closed)
        if self.to_cut > 0:
            self.to_cut -= 1
            body = _AsyncCutBody(response.stream, self.closed)
        return httpx.Response(response.status_code, headers=response.headers, stream=body)

    async def aclose(self) -> None:
        await self._inner.aclose()


def resumed_from(transport: CutStreams | AsyncCutStreams) -> list[str | None]:
    """The Last-Event-ID each stream connection was opened with (None: the first)."""
    return [request.headers.get("Last-Event-ID") for request in transport.stream_requests]
