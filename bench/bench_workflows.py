"""End-to-end throughput through HTTP against a real `orchestrator serve`, with references.

Starts the server on a fresh SQLite file with TASK_TIME_SCALE=0 and:
- posts N workflows from C concurrent keep-alive connections and waits until every one is
  COMPLETE (checked through /execution/stats), printing workflows/s and the ratios to the design
  target (500/s) and to the original FastAPI orchestrator (about 28/s on these machines);
- times GET /workflow/{id} and GET /execution/stats, and the same GET against bare Starlette
  serving the same bytes (the reference), side by side in this run, printing the ratio.

    python bench/bench_workflows.py --workflows 200 --concurrency 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from httpclient import Connection

TARGET_WORKFLOWS_PER_S = 500.0
ORIGINAL_WORKFLOWS_PER_S = 28.0
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_orchestrator(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """`orchestrator serve` on a fresh database, instant tasks."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
        "TASK_TIME_SCALE": "0",
        "LOG_LEVEL": "WARNING",
        "LOG_FILE": str(workdir / "bench.log"),
    }
    command = [sys.executable, "-m", "orchestrator", "serve", "--port", str(port)]
    return subprocess.Popen(command, env=env, cwd=workdir, stdout=subprocess.DEVNULL)


async def wait_healthy(port: int) -> None:
    """Poll /health until it answers 200."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            conn = await Connection.open(HOST, port)
            status, _ = await conn.request("GET", "/health")
            await conn.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.05)
    raise SystemExit(f"nothing healthy on port {port}")


async def run_clients(
    port: int, concurrency: int, count: int, send: Callable[[Connection, int], Awaitable[None]]
) -> float:
    """Spread `count` calls of `send` over `concurrency` connections; return the seconds taken."""
    connections = [await Connection.open(HOST, port) for _ in range(concurrency)]
    next_index = 0

    async def client(conn: Connection) -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            await send(conn, index)

    began = time.perf_counter()
    await asyncio.gather(*(client(conn) for conn in connections))
    elapsed = time.perf_counter() - began
    for conn in connections:
        await conn.close()
    return elapsed


async def bench_orchestrator(
    port: int, workflows: int, concurrency: int, reads: int
) -> tuple[dict[str, float], bytes]:
    """Workflows end to end, then reads; returns the figures and one workflow's body."""
    await wait_healthy(port)
    ids: list[int] = []

    async def start(conn: Connection, index: int) -> None:
        status, body = await conn.request("POST", "/workflow/start", {"name": f"bench-{index}"})
        assert status == 201, (status, body)
        ids.append(json.loads(body)["workflow_id"])

    began = time.perf_counter()
    accepted = await run_clients(port, concurrency, workflows, start)
    watcher = await Connection.open(HOST, port)
    while True:
        _, body = await watcher.request("GET", "/execution/stats")
        counts = json.loads(body)["workflows"]
        if counts["complete"] + counts["failed"] + counts["cancelled"] >= workflows:
            break
        await asyncio.sleep(0.002)
    finished = time.perf_counter() - began
    assert counts["complete"] == workflows, counts
    _, sample = await watcher.request("GET", f"/workflow/{ids[0]}")
    await watcher.close()

    async def read(conn: Connection, index: int) -> None:
        status, _ = await conn.request("GET", f"/workflow/{ids[index % len(ids)]}")
        assert status == 200

    async def stats(conn: Connection, index: int) -> None:
        status, _ = await conn.request("GET", "/execution/stats")
        assert status == 200

    figures = {
        "accepted_s": accepted,
        "finished_s": finished,
        "reads_per_s": reads / await run_clients(port, concurrency, reads, read),
        "stats_per_s": reads / await run_clients(port, concurrency, reads, stats),
        "sample_bytes": float(len(sample)),
    }
    return figures, sample


async def bench_reference(port: int, concurrency: int, reads: int) -> float:
    """GET requests/s against bare Starlette."""
    await wait_healthy(port)

    async def read(conn: Connection, index: int) -> None:
        status, _ = await conn.request("GET", f"/workflow/{index}")
        assert status == 200

    return reads / await run_clients(port, concurrency, reads, read)


def main() -> None:
    """Run the orchestrator and the bare-Starlette reference in turn, print figures and ratios."""
    parser = argparse.ArgumentParser(description="HTTP end-to-end benchmark")
    parser.add_argument("--workflows", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--reads", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port = free_port()
        server = start_orchestrator(workdir, port)
        try:
            figures, sample = asyncio.run(
                bench_orchestrator(port, args.workflows, args.concurrency, args.reads)
            )
        finally:
            server.terminate()
            server.wait(timeout=10)
        body_file = workdir / "body.json"
        body_file.write_bytes(sample)
        ref_port = free_port()
        here = Path(__file__).parent
        reference = subprocess.Popen(
            [sys.executable, str(here / "bare_starlette.py"), str(ref_port), str(body_file)]
        )
        try:
            bare = asyncio.run(bench_reference(ref_port, args.concurrency, args.reads))
        finally:
            reference.terminate()
            reference.wait(timeout=10)
    rate = args.workflows / figures["finished_s"]
    print(f"workflows:                 {args.workflows} over {args.concurrency} connections")
    print(f"all accepted (201) after:  {figures['accepted_s']:.3f} s")
    print(f"all COMPLETE after:        {figures['finished_s']:.3f} s")
    print(f"end to end:                {rate:.0f} workflows/s")
    print(f"  ratio to target 500/s:   {rate / TARGET_WORKFLOWS_PER_S:.2f}")
    print(f"  ratio to original 28/s:  {rate / ORIGINAL_WORKFLOWS_PER_S:.1f}")
    print(
        f"GET /workflow/{{id}}:        {figures['reads_per_s']:.0f} requests/s "
        f"({figures['sample_bytes']:.0f}-byte body)"
    )
    print(f"bare Starlette, same body: {bare:.0f} requests/s")
    print(f"  ratio to bare Starlette: {figures['reads_per_s'] / bare:.2f}")
    print(f"GET /execution/stats:      {figures['stats_per_s']:.0f} requests/s")


if __name__ == "__main__":
    main()
