"""End-to-end rate with a user no-op task in every state, next to the built-in tasks.

Runs `orchestrator serve` on fresh SQLite files, alternating, in one run: built-in tasks with
TASK_TIME_SCALE=0 (instant simulated work), a user module whose sync step in every state does
nothing (bench/noop_tasks.py, worker threads), and the same as `async def` (the event loop).
Each round posts N workflows from C keep-alive connections and times them until all are
COMPLETE; the median of the rounds and the ratios to the built-in tasks are printed.

    python bench/bench_user_tasks.py --workflows 1000 --concurrency 16 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_workflows import HOST, bench_orchestrator, free_port

VARIANTS = {
    "built-in tasks (TASK_TIME_SCALE=0)": {},
    "user no-op tasks (sync, threads)": {"TASKS_MODULES": "noop_tasks"},
    "user no-op tasks (async, loop)": {"TASKS_MODULES": "noop_tasks", "NOOP_ASYNC": "1"},
}


def serve(workdir: Path, port: int, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    """`orchestrator serve` on a fresh database with `extra` settings."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
        "TASK_TIME_SCALE": "0",
        "LOG_LEVEL": "WARNING",
        "LOG_FILE": "",
        "PYTHONPATH": str(Path(__file__).parent),
        **extra,
    }
    command = [sys.executable, "-m", "orchestrator", "serve", "--host", HOST, "--port", str(port)]
    return subprocess.Popen(command, env=env, cwd=workdir, stdout=subprocess.DEVNULL)


def one_round(extra: dict[str, str], workflows: int, concurrency: int) -> float:
    """Workflows/s from posting the first to seeing the last COMPLETE."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = serve(Path(tmp), port, extra)
        try:
            figures, _ = asyncio.run(bench_orchestrator(port, workflows, concurrency, reads=1))
        finally:
            server.terminate()
            server.wait(timeout=30)
    return workflows / figures["finished_s"]


def main() -> None:
    """Alternate the variants for `--rounds` rounds; print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, extra in VARIANTS.items():
            rates[name].append(one_round(extra, args.workflows, args.concurrency))
    reference = statistics.median(rates["built-in tasks (TASK_TIME_SCALE=0)"])
    print(f"{args.workflows} workflows x {args.rounds} rounds, {args.concurrency} connections")
    for name, values in rates.items():
        median = statistics.median(values)
        shown = ", ".join(f"{value:.0f}" for value in values)
        ratio = median / reference
        print(f"{name:38} {median:6.0f} workflows/s  (rounds: {shown}; ratio {ratio:.2f})")


if __name__ == "__main__":
    main()
