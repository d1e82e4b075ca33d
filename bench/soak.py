"""A soak: a real server under steady mixed load for a while, with its memory sampled.

Starts `orchestrator serve` on a fresh SQLite file with instant tasks, then for `--seconds` runs
`--concurrency` keep-alive clients that start workflows (each with its own Idempotency-Key),
read them back and read the stats, and prints: requests/s, workflows/s, answers by status (any
5xx is a failure of the run), and the server's resident memory (RSS) at the start, every few
seconds, and at the end. Exit 1 if any 5xx was seen or not every started workflow completed.

    python bench/soak.py --seconds 30 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench_workflows import HOST, free_port, start_orchestrator, wait_healthy
from httpclient import Connection


def rss_mb(pid: int) -> float:
    """The process's resident set size in MB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def soak(port: int, pid: int, seconds: float, concurrency: int) -> int:
    """Run the load; print the figures; the exit code."""
    await wait_healthy(port)
    statuses: Counter[int] = Counter()
    started: list[int] = []
    deadline = time.monotonic() + seconds
    samples = [(0.0, rss_mb(pid))]

    async def client(number: int) -> None:
        conn = await Connection.open(HOST, port)
        index = 0
        while time.monotonic() < deadline:
            index += 1
            key = f"soak-{number}-{index}"
            status, body = await conn.request(
                "POST",
                "/workflow/start",
                {"name": key, "config": {"iterations": 100}},
                headers={"Idempotency-Key": key},
            )
            statuses[status] += 1
            if status == 201:
                workflow_id = json.loads(body)["workflow_id"]
                started.append(workflow_id)
                statuses[(await conn.request("GET", f"/workflow/{workflow_id}"))[0]] += 1
            statuses[(await conn.request("GET", "/execution/stats"))[0]] += 1
        await conn.close()

    async def sampler() -> None:
        began = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(5)
            samples.append((time.monotonic() - began, rss_mb(pid)))

    began = time.perf_counter()
    await asyncio.gather(sampler(), *(client(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - began
    watcher = await Connection.open(HOST, port)
    settle_deadline = time.monotonic() + 60
    while time.monotonic() < settle_deadline:
        _, body = await watcher.request("GET", "/execution/stats")
        counts = json.loads(body)["workflows"]
        if counts["complete"] + counts["failed"] + counts["cancelled"] >= len(started):
            break
        await asyncio.sleep(0.05)
    await watcher.close()
    samples.append((time.perf_counter() - began, rss_mb(pid)))

    requests = sum(statuses.values())
    errors = sum(n for status, n in statuses.items() if status >= 500)
    print(f"soak: {elapsed:.1f} s, {concurrency} clients, instant tasks, SQLite synchronous=FULL")
    print(f"requests: {requests} ({requests / elapsed:,.0f}/s); by status: {dict(statuses)}")
    print(
        f"workflows started: {len(started)} ({len(started) / elapsed:,.0f}/s); "
        f"complete: {counts['complete']}, failed: {counts['failed']}"
    )
    print("RSS (MB) over time: " + ", ".join(f"{t:.0f}s {mb:.0f}" for t, mb in samples))
    print(f"5xx answers: {errors}")
    return 0 if errors == 0 and counts["complete"] == len(started) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        server = start_orchestrator(Path(folder), port)
        try:
            return asyncio.run(soak(port, server.pid, args.seconds, args.concurrency))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
