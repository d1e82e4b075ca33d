"""A TCP proxy in front of a database server that a test can cut and restore, to play a server
(or the network to it) going away while a store is open."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator


class TcpProxy:
    """Forwards connections on a local port to `host:port`; `cut` drops them all and refuses
    new ones until `resume`."""

    def __init__(self, host: str, port: int, url: str) -> None:
        self._target = (host, port)
        self._target_url = url
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def to_url(cls, url: str) -> AsyncIterator[TcpProxy]:
        """A running proxy to the server of the database URL `url`, stopped afterwards."""
        parts = urllib.parse.urlsplit(url)
        proxy = cls(parts.hostname or "127.0.0.1", parts.port or 5432, url)
        await proxy.resume()
        try:
            yield proxy
        finally:
            await proxy.cut()

    @property
    def url(self) -> str:
        """The database URL, through the proxy."""
        parts = urllib.parse.urlsplit(self._target_url)
        user = f"{parts.username}@" if parts.username else ""
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    async def resume(self) -> None:
        """Listen (on the same port as before, if there was one) and forward."""
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stop listening and drop every forwarded connection at once."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _forward(self, client_in: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        ends = {client}
        self._writers.add(client)
        try:
            server_in, server = await asyncio.open_connection(*self._target)
            ends.add(server)
            self._writers.add(server)
            await asyncio.gather(_pipe(client_in, server), _pipe(server_in, client))
        except OSError:
            pass  # the server refused or dropped us: the client's side is dropped below
        finally:
            for writer in ends:
                writer.transport.abort()
                self._writers.discard(writer)
            self._tasks.discard(task)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.transport.abort()
