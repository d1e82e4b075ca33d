"""HTTP loads: posting workflows, waiting for them to finish, timing requests one by one, and a
GET load from `wrk` (or, without it, the project's asyncio client in several processes)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import multiprocessing
import re
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from bench_workflows import HOST, run_clients
from httpclient import Connection

from suite.servers import Orchestrator

#: How often the finish line is checked (GET /execution/stats): a 1,000-workflow run takes
#: seconds, so 10 ms is well under 1% of it, and one request per 10 ms costs the server little.
POLL_SECONDS = 0.01


async def post_workflows(
    port: int,
    count: int,
    concurrency: int,
    *,
    prefix: str = "bench",
    config: dict[str, Any] | None = None,
    latencies: list[float] | None = None,
) -> list[int]:
    """POST /workflow/start `count` times from `concurrency` keep-alive connections; the ids.

    A 429 or 503 (the server's back-pressure) is retried after a short pause; its latency then
    counts from the first try. Each POST's seconds go to `latencies` when given.
    """
    ids: list[int] = []

    async def start(conn: Connection, index: int) -> None:
        body: dict[str, Any] = {"name": f"{prefix}-{index}"}
        if config:
            body["config"] = config
        began = time.perf_counter()
        while True:
            status, answer = await conn.request("POST", "/workflow/start", body)
            if status not in (429, 503):
                break
            await asyncio.sleep(0.05)
        if latencies is not None:
            latencies.append(time.perf_counter() - began)
        if status != 201:
            raise RuntimeError(f"POST /workflow/start answered {status}: {answer[:200]!r}")
        ids.append(json.loads(answer)["workflow_id"])

    await run_clients(port, concurrency, count, start)
    return ids


def finished(counts: dict[str, int]) -> int:
    """Workflows that reached an end state."""
    return counts["complete"] + counts["failed"] + counts["cancelled"]


async def wait_finished(
    servers: list[Orchestrator], total: int, timeout: float = 3600.0
) -> dict[str, int]:
    """Poll until `total` workflows have ended (as the server that saw most ends says); their
    counters. RuntimeError if any did not end COMPLETE, or on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        seen = [await server.workflow_counts() for server in servers]
        counts = max(seen, key=finished)
        if finished(counts) >= total:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"after {timeout:.0f} s only {finished(counts)} of {total} ended")
        await asyncio.sleep(POLL_SECONDS)
    if counts["complete"] < total:
        raise RuntimeError(f"not every workflow completed: {counts}")
    return counts


async def request_p50_ms(port: int, path: str, count: int) -> float:
    """The median milliseconds of `count` GETs of `path`, one after another on one connection
    (after 10 to warm up)."""
    conn = await Connection.open(HOST, port)
    try:
        seconds: list[float] = []
        for index in range(count + 10):
            began = time.perf_counter()
            status, _ = await conn.request("GET", path)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}")
            if index >= 10:
                seconds.append(time.perf_counter() - began)
    finally:
        await conn.close()
    return statistics.median(seconds) * 1000


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


_WRK_SCRIPT = """
math.randomseed(1)
request = function()
  return wrk.format("GET", "/workflow/" .. math.random(1, %d))
end
"""


async def read_load(port: int, ids: int, connections: int, seconds: float, folder: Path) -> float:
    """GET /workflow/{random id in 1..ids} from `connections` keep-alive connections for
    `seconds`; requests/s. RuntimeError if any answer is not 200."""
    if shutil.which("wrk"):
        return await _wrk(port, ids, connections, seconds, folder)
    return await _asyncio_processes(port, ids, connections, seconds)


def read_load_generator(connections: int) -> str:
    """What `read_load` uses on this machine, in words."""
    if shutil.which("wrk"):
        return f"wrk, 1 thread, {connections} connections"
    processes = _processes(connections)
    return f"asyncio client (bench/httpclient.py) in {processes} processes, {connections} conns"


async def _wrk(port: int, ids: int, connections: int, seconds: float, folder: Path) -> float:
    script = folder / "reads.lua"
    script.write_text(_WRK_SCRIPT % max(1, ids))
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "-s",
        str(script),
        f"http://{HOST}:{port}/",
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await process.communicate()
    finally:
        if process.returncode is None:  # cancelled (Ctrl-C): wrk stops with the run
            process.kill()
            await process.wait()
    stdout = out.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {err.decode()[:300]}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", stdout)
    if bad:
        raise RuntimeError(f"wrk saw {bad.group(1)} answers other than 200")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", stdout)
    if rate is None:
        raise RuntimeError(f"no Requests/sec in wrk's output: {stdout[-300:]}")
    return float(rate.group(1))


def _processes(connections: int) -> int:
    return max(1, min(4, connections // 8))


async def _asyncio_processes(port: int, ids: int, connections: int, seconds: float) -> float:
    processes = _processes(connections)
    share = [connections // processes + (i < connections % processes) for i in range(processes)]
    context = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        counts = await asyncio.gather(
            *(loop.run_in_executor(pool, _read_worker, port, ids, n, seconds) for n in share)
        )
    return sum(counts) / seconds


def _read_worker(port: int, ids: int, connections: int, seconds: float) -> int:
    """One load process: GETs for `seconds` from `connections` connections; how many."""
    return asyncio.run(_read_loop(port, ids, connections, seconds))


async def _read_loop(port: int, ids: int, connections: int, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    done = 0

    async def client(number: int) -> None:
        nonlocal done
        conn = await Connection.open(HOST, port)
        index = number
        try:
            while time.monotonic() < deadline:
                index = (index * 1103515245 + 12345) % 2**31
                status, _ = await conn.request("GET", f"/workflow/{index % ids + 1}")
                if status != 200:
                    raise RuntimeError(f"GET /workflow/{{id}} answered {status}")
                done += 1
        finally:
            await conn.close()

    await asyncio.gather(*(client(n) for n in range(connections)))
    return done
