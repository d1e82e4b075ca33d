"""sse_lag_p99_ms: how late /events/stream delivers events to many clients while workflows run.

The clients live in two processes of their own (so their parsing does not slow the poster, and
the poster does not delay their reads). Each frame's lag is the time the read that completed it
came off its socket minus the event's `recorded_at` (its commit time, in the frame's JSON).
Events a client had not received when the listening ends are counted with their lag at that
moment: a lower bound, so a server that falls behind cannot look better by never delivering.

A client is an asyncio protocol (`Stream`): it stamps each read as it arrives and parses it after
the other sockets ready at the same moment were read, and it does per read, not per frame, what
it can (one regular-expression pass per read, each event's `recorded_at` parsed once per process,
the lags worked out after the listening). The first version (an asyncio StreamReader per
connection, two regular expressions and a datetime per frame) took more CPU than the server it
measured: 130% of a core against the server's 60%, and a p99 of 2 s that was mostly its own
backlog, with either version of the server. Every stream's frames must carry consecutive
positions, each once, or the figure fails.
"""

from __future__ import annotations

import array
import asyncio
import bisect
import contextlib
import json
import multiprocessing
import queue
import re
import time
from datetime import datetime
from multiprocessing.sharedctypes import Synchronized
from typing import Any, cast

from bench_workflows import HOST
from httpclient import Connection

from suite.context import Context, loop_factory
from suite.figures import Measured
from suite.loads import percentile, wait_finished
from suite.servers import cpu_seconds, start_orchestrator
from suite.suite_http import e2e_run

PROCESSES = 2
#: Most POSTs in flight at once while posting on a schedule.
POSTERS = 64
_RECORDED_AT = re.compile(rb'"recorded_at":"([^"]+)"')


async def sse_lag_p99_ms(ctx: Context) -> Measured:
    """plan.sse_clients clients on /events/stream while workflows are posted at half the e2e
    rate for plan.sse_seconds; the 99th percentile of every delivered (or late) frame's lag."""
    e2e = await e2e_run(ctx)
    rate = e2e.rate / 2
    clients, seconds = ctx.plan.sse_clients, ctx.plan.sse_seconds
    drain = max(10.0, seconds * 2)
    url = await ctx.target.fresh(ctx, "sse")
    server = await start_orchestrator(
        ctx, url, ctx.folder("sse"), settings=ctx.target.server_settings
    )
    context = multiprocessing.get_context("spawn")
    target = context.Value("q", 0)
    stop_at = context.Value("d", 0.0)
    results: multiprocessing.Queue[Any] = context.Queue()
    shares = [clients // PROCESSES + (i < clients % PROCESSES) for i in range(PROCESSES)]
    listeners = [
        context.Process(target=listen, args=(server.port, n, target, stop_at, results))
        for n in shares
        if n
    ]
    for listener in listeners:
        listener.start()
        ctx.stack.callback(_end, listener)
    for _ in listeners:
        message = await _receive(results, 60)
        if message != "ready":
            raise RuntimeError(f"an event-stream client process failed: {message}")
    ctx.say(f"sse: {clients} clients; workflows at {rate:,.0f}/s for {seconds:.0f} s")
    pids = [listener.pid for listener in listeners if listener.pid is not None]
    began, cpu = time.perf_counter(), server.cpu_seconds()
    clients_cpu = sum(cpu_seconds(pid) for pid in pids)
    posted = await post_at_rate(server.port, rate, seconds)
    elapsed = time.perf_counter() - began
    achieved, busy = posted / elapsed, (server.cpu_seconds() - cpu) / elapsed
    clients_busy = (sum(cpu_seconds(pid) for pid in pids) - clients_cpu) / elapsed
    await wait_finished([server], posted)
    head = await _head(server.port)
    target.value = head
    stop_at.value = time.time() + drain
    ctx.say(f"sse: {posted} workflows posted ({achieved:,.0f}/s), head {head}; draining")
    lags = array.array("d")
    lasts: list[int] = []
    for _ in listeners:
        message = await _receive(results, drain + 60)
        if not isinstance(message, dict):
            raise RuntimeError(f"an event-stream client process failed: {message}")
        lags.frombytes(message["lags"])
        lasts += message["lasts"]
    ended = time.time()
    for listener in listeners:
        await asyncio.to_thread(listener.join, 10)
    delivered = len(lags)
    missing = await _late(server.port, sorted(lasts), head, ended, lags)
    await server.stop()
    note = (
        f"{clients} clients; workflows offered at {rate:,.0f}/s (half the e2e rate) for "
        f"{seconds:.0f} s, {achieved:,.0f}/s taken ({POSTERS} POSTs in flight at most); CPU "
        f"meanwhile: server {busy:.0%}, clients {clients_busy:.0%} (of one core); "
        f"{delivered:,} frames delivered"
    )
    if missing:
        note += f"; {missing:,} not delivered within {drain:.0f} s, counted at their lag then"
    ctx.note("sse_lag_p99_ms", note)
    return percentile(list(lags), 0.99) * 1000, None


async def _receive(results: multiprocessing.Queue[Any], timeout: float) -> Any:
    """The next message of the client processes (polled, so Ctrl-C is not held up)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(queue.Empty):
            return results.get_nowait()
        if time.monotonic() > deadline:
            raise RuntimeError(f"no word from the event-stream clients in {timeout:.0f} s")
        await asyncio.sleep(0.02)


def _end(process: multiprocessing.process.BaseProcess) -> None:
    if process.is_alive():
        process.kill()
    process.join(5)


async def post_at_rate(port: int, rate: float, seconds: float) -> int:
    """POST /workflow/start on a schedule of `rate` a second for `seconds`, open loop: each
    post goes at its time on an idle connection (a new one if none is idle, up to POSTERS),
    whether or not the earlier ones were answered; how many were posted. A server that
    cannot keep up gets fewer once POSTERS wait on it."""
    idle: list[Connection] = []
    opened: list[Connection] = []
    slots = asyncio.Semaphore(POSTERS)
    failures: list[str] = []

    async def post(index: int) -> None:
        try:
            conn = idle.pop() if idle else await Connection.open(HOST, port)
            if conn not in opened:
                opened.append(conn)
            status, answer = await conn.request("POST", "/workflow/start", {"name": f"sse-{index}"})
            idle.append(conn)
            if status != 201:
                failures.append(f"POST /workflow/start answered {status}: {answer[:200]!r}")
        finally:
            slots.release()

    began = time.perf_counter()
    ends = began + seconds
    posts: list[asyncio.Task[None]] = []
    while (due := began + len(posts) / rate) < ends:
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        if time.perf_counter() >= ends:
            slots.release()
            break
        posts.append(asyncio.ensure_future(post(len(posts))))
    try:
        await asyncio.gather(*posts)
    finally:
        for conn in opened:
            await conn.close()
    if failures:
        raise RuntimeError(failures[0])
    return len(posts)


async def _head(port: int) -> int:
    conn = await Connection.open(HOST, port)
    try:
        _, body = await conn.request("GET", "/health")
    finally:
        await conn.close()
    return int(json.loads(body)["log_position"])


async def _late(
    port: int, lasts: list[int], head: int, ended: float, lags: array.array[float]
) -> int:
    """Add to `lags`, for every client that stopped short of `head`, each event it missed,
    at its lag when the listening ended; how many such (client, event) pairs."""
    if not lasts or lasts[0] >= head:
        return 0
    missing = 0
    after = lasts[0]
    conn = await Connection.open(HOST, port)
    try:
        while after < head:
            _, body = await conn.request("GET", f"/events?after={after}&limit=1000")
            events = json.loads(body)["events"]
            if not events:
                break
            for event in events:
                position = event["position"]
                short = bisect.bisect_left(lasts, position)  # clients whose last is below it
                if short:
                    lag = ended - datetime.fromisoformat(event["recorded_at"]).timestamp()
                    lags.extend([lag] * short)
                    missing += short
                after = position
    finally:
        await conn.close()
    return missing


def listen(
    port: int,
    clients: int,
    target: Synchronized[int],
    stop_at: Synchronized[float],
    results: multiprocessing.Queue[Any],
) -> None:
    """A client process: `clients` connections to /events/stream, each recording its frames'
    lags until it has seen position `target` or the clock passes `stop_at`; puts "ready" once
    all are connected, then {"lags": bytes of doubles, "lasts": last positions} on `results`."""
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            lags, lasts = runner.run(_listen(port, clients, target, stop_at, results))
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")
        return
    results.put({"lags": lags.tobytes(), "lasts": lasts})


async def _listen(
    port: int,
    clients: int,
    target: Synchronized[int],
    stop_at: Synchronized[float],
    results: multiprocessing.Queue[Any],
) -> tuple[array.array[float], list[int]]:
    loop = asyncio.get_running_loop()
    lags = Lags(loop)
    streams: list[Stream] = []
    for _ in range(clients):
        _, stream = await loop.create_connection(lambda: Stream(port, lags), HOST, port)
        await stream.connected
        streams.append(stream)
    results.put("ready")
    while not all(stream.closed for stream in streams) and lags.error is None:
        await asyncio.sleep(0.05)
        goal, deadline = target.value, stop_at.value
        for stream in streams:
            if (goal and stream.last >= goal) or (deadline and time.time() > deadline):
                stream.close()
    if lags.error is not None:
        raise RuntimeError(lags.error)
    return lags.values(), [stream.last for stream in streams]


class Lags:
    """What the streams of one client process received: for each read, the time it came off its
    socket and the positions of the event frames in it; the lags are worked out at the end.

    A read is stamped as it comes off its socket and parsed after every socket that was ready
    with it has been read, so no connection's arrival time waits for another's parsing: what is
    measured is the delivery, not this process's own work. A stream's frames must carry
    consecutive positions, each once (anything else fails the figure); each event's
    `recorded_at` is read from the first frame of it that this process receives.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._reads: list[tuple[Stream, float, bytes]] = []
        self._arrivals = array.array("d")
        self._firsts = array.array("q")
        self._lasts = array.array("q")
        #: position -> its recorded_at as a time, and recorded_at text -> time (a commit's
        #: events share it); every position from `_low` to `_high` is in `_recorded`.
        self._recorded: dict[int, float] = {}
        self._times: dict[bytes, float] = {}
        self._low, self._high = 0, -1
        #: What went wrong with a stream's frames, if anything did.
        self.error: str | None = None

    def arrived(self, stream: Stream, data: bytes) -> None:
        """`data` came off `stream`'s socket just now."""
        if not self._reads:
            self._loop.call_soon(self._parse)
        self._reads.append((stream, time.time(), data))

    def _parse(self) -> None:
        reads, self._reads = self._reads, []
        for stream, arrived, data in reads:
            stream.parse(arrived, data)

    def add(self, arrived: float, first: int, last: int, frames: bytes) -> None:
        """The event frames `first`..`last`, all of `frames`, received at `arrived`."""
        if first < self._low or last > self._high:
            stamps = _RECORDED_AT.findall(frames)
            if len(stamps) != last - first + 1:
                self.error = f"frames {first}..{last} hold {len(stamps)} recorded_at"
                return
            for position, stamp in enumerate(stamps, first):
                recorded = self._times.get(stamp)
                if recorded is None:
                    recorded = datetime.fromisoformat(stamp.decode()).timestamp()
                    self._times[stamp] = recorded
                self._recorded[position] = recorded
            if first <= self._high + 1 and last >= self._low - 1:  # they meet: one range
                self._low, self._high = min(first, self._low), max(last, self._high)
            elif last - first > self._high - self._low:
                self._low, self._high = first, last
        self._arrivals.append(arrived)
        self._firsts.append(first)
        self._lasts.append(last)

    def values(self) -> array.array[float]:
        """Every frame's lag."""
        recorded, values = self._recorded, array.array("d")
        for arrived, first, last in zip(self._arrivals, self._firsts, self._lasts, strict=True):
            values.extend([arrived - recorded[position] for position in range(first, last + 1)])
        return values


class Stream(asyncio.Protocol):
    """One GET /events/stream connection, read as it arrives (no stream reader in between)."""

    def __init__(self, port: int, lags: Lags) -> None:
        self._port = port
        self._lags = lags
        self._transport: asyncio.Transport | None = None
        self._pending = b""
        self._started = False
        #: The position of the last event frame received.
        self.last = 0
        self.closed = False
        #: Done once the stream has taken its start position (its first frame, ": connected").
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)  # uvloop's is not one
        transport.write(
            f"GET /events/stream HTTP/1.1\r\nHost: {HOST}:{self._port}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        if self._started:
            self._lags.arrived(self, data)
            return
        data = self._pending + data
        if b"\r\n\r\n" in data and b" 200 " not in data.split(b"\r\n", 1)[0] + b" ":
            self._fail(RuntimeError(f"GET /events/stream answered {data[:60]!r}"))
            return
        end = data.find(b"connected\n\n")
        if end < 0:
            self._pending = data
            return
        self._started = True
        self._pending = b""
        self.connected.set_result(None)
        self.parse(time.time(), data[end + len(b"connected\n\n") :])

    def parse(self, arrived: float, data: bytes) -> None:
        """Take the whole frames of what has come so far, received at `arrived`; keep the rest
        for the next read. The body is chunked: chunk sizes sit between frames, and a frame's
        `id:` line follows a newline (JSON data holds none)."""
        if self._pending:
            data = self._pending + data
        cut = data.rfind(b"\n\n") + 2
        if cut < 2:
            self._pending = data
            return
        frames, self._pending = data[:cut], data[cut:]
        head = frames.startswith(b"id: ")
        count = frames.count(b"\nid: ") + head
        if not count:  # keep-alives only
            return
        at = 0 if head else frames.find(b"\nid: ") + 1
        first = int(frames[at + 4 : frames.index(b"\n", at)])
        at = frames.rfind(b"\nid: ") + 1 if count > 1 or not head else 0
        last = int(frames[at + 4 : frames.index(b"\n", at)])
        if last - first + 1 != count or (self.last and first != self.last + 1):
            self._lags.error = (
                f"a stream went from position {self.last} to frames {first}..{last} "
                f"({count} of them): out of order, repeated or missing"
            )
            return
        self._lags.add(arrived, first, last, frames)
        self.last = last

    def close(self) -> None:
        """Stop listening."""
        if self._transport is not None:
            self._transport.close()
        self.closed = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionError(f"GET /events/stream closed before it began: {exc}"))

    def _fail(self, exc: Exception) -> None:
        if not self.connected.done():
            self.connected.set_exception(exc)
        if self._transport is not None:
            self._transport.close()
