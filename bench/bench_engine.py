"""The engine alone, in process: workflows started through the coordinator (no HTTP) on a fresh
SQLite file, timed until all are COMPLETE, with the CPU each thread spent per workflow.

The server is bound by the GIL: the event loop's thread, the SQLite writer and reader threads
and the step threads take turns on one core, so what any of them saves (or makes another wait
for) shows here. To compare two trees side by side, run each in turn (the other through
PYTHONPATH=/path/to/other/src), several rounds each:

    python bench/bench_engine.py --workflows 2000 --concurrency 16 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import gc
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from orchestrator.domain.commands import StartWorkflow
from orchestrator.projections.models import WORKFLOWS
from orchestrator.runtime import build_runtime
from orchestrator.settings import Settings


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process, by thread name (the
    worker pools' threads summed under their prefix)."""
    names = {
        t.native_id: t.name.split(" (")[0].rstrip("0123456789_-") for t in threading.enumerate()
    }
    tick = os.sysconf("SC_CLK_TCK")
    found: collections.defaultdict[str, float] = collections.defaultdict(float)
    for tid in os.listdir("/proc/self/task"):
        stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        found[names.get(int(tid), "ended")] += (int(fields[11]) + int(fields[12])) / tick
    return dict(found)


async def one_round(workflows: int, concurrency: int) -> tuple[float, dict[str, float]]:
    """Workflows/s and CPU ms per workflow by thread (the round's own, start-up excluded)."""
    folder = tempfile.mkdtemp(prefix="bench-engine-")
    settings = dataclasses.replace(
        Settings(), database_url=f"sqlite:///{folder}/engine.db", task_time_scale=0.0
    )
    runtime = build_runtime(settings)
    await runtime.start()
    gc.freeze()  # as `orchestrator serve` tunes the collector (cli._tune_collector)
    gc.set_threshold(20_000, 20, 20)
    before = thread_cpu_seconds()
    numbers = iter(range(workflows))

    async def client() -> None:
        for number in numbers:
            outcome = await runtime.coordinator.start(
                StartWorkflow(workflow_id=0, name=f"bench-{number}")
            )
            await runtime.projector.wait_for(outcome.position, 10.0)  # as an API answer waits

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    while runtime.projector.counts(WORKFLOWS).get("COMPLETE", 0) < workflows:
        await asyncio.sleep(0.002)
    rate = workflows / (time.perf_counter() - began)
    after = thread_cpu_seconds()
    runtime.begin_shutdown()
    await runtime.stop()
    cpu = {name: (after[name] - before.get(name, 0.0)) * 1000 / workflows for name in after}
    return rate, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rates = []
    for index in range(args.rounds):
        rate, cpu = asyncio.run(one_round(args.workflows, args.concurrency))
        rates.append(rate)
        threads = ", ".join(f"{name} {ms:.3f}" for name, ms in sorted(cpu.items()) if ms >= 0.005)
        print(
            f"round {index + 1}: {rate:,.0f} workflows/s; CPU ms a workflow: "
            f"{sum(cpu.values()):.3f} ({threads})",
            flush=True,
        )
    print(f"median: {statistics.median(rates):,.0f} workflows/s ({sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
