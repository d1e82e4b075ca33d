"""sse_lag_p99_ms: how late /events/stream delivers events to many clients while workflows run.

The clients live in two processes of their own (so their parsing does not slow the poster, and
the poster does not delay their reads). Each frame's lag is the time its chunk arrived minus the
event's `recorded_at` (its commit time, in the frame's JSON). Events a client had not received
when the listening ends are counted with their lag at that moment: a lower bound, so a server
that falls behind cannot look better by never delivering.
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
from typing import Any

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
_ID = re.compile(rb"(?m)^id: (\d+)")


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
    lags = array.array("d")
    lasts = [0] * clients
    times: dict[bytes, float] = {}
    streams = [await _open_stream(port) for _ in range(clients)]
    results.put("ready")

    async def read(index: int, reader: asyncio.StreamReader) -> None:
        pending = b""
        while data := await reader.read(65536):
            arrived = time.time()
            pending += data
            cut = pending.rfind(b"\n\n")
            if cut < 0:
                continue
            frames, pending = pending[:cut], pending[cut + 2 :]
            for match in _RECORDED_AT.finditer(frames):
                stamp = match.group(1)
                recorded = times.get(stamp)
                if recorded is None:
                    recorded = times[stamp] = datetime.fromisoformat(stamp.decode()).timestamp()
                lags.append(arrived - recorded)
            ids = _ID.findall(frames)
            if ids:
                lasts[index] = int(ids[-1])

    tasks = [asyncio.ensure_future(read(n, reader)) for n, (reader, _) in enumerate(streams)]
    while not all(task.done() for task in tasks):
        await asyncio.sleep(0.05)
        goal, deadline = target.value, stop_at.value
        for index, task in enumerate(tasks):
            if (goal and lasts[index] >= goal) or (deadline and time.time() > deadline):
                task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for _, writer in streams:
        writer.close()
    return lags, lasts


async def _open_stream(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(
        f"GET /events/stream HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Accept: text/event-stream\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
        raise RuntimeError(f"GET /events/stream answered {head[:60]!r}")
    # The first frame, ": connected", says the stream has taken its start position.
    await reader.readuntil(b"connected\n\n")
    return reader, writer
