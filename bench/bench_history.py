"""History tools on a big log: verify and rebuild-projections rates on >= 100,000 events.

Fills a fresh SQLite file by running workflows through the real engine (instant tasks), then
times, side by side in one run: a bare scan of the log (the reference: reading every event and
nothing else), `verify`, `rebuild-projections` and `rebuild-projections --check`.

    python bench/bench_history.py --workflows 7000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from orchestrator.backend import make_backend
from orchestrator.domain.commands import StartWorkflow
from orchestrator.eventstore.base import EventStore
from orchestrator.history.verify import verify
from orchestrator.projections import rebuild as rebuilding
from orchestrator.runtime import build_runtime
from orchestrator.settings import Database, Settings


async def fill(path: Path, workflows: int) -> int:
    """Run `workflows` automatic workflows to COMPLETE; return the log's length."""
    runtime = build_runtime(
        Settings(database_url=f"sqlite:///{path}", task_time_scale=0, log_file="")
    )
    await runtime.start()
    try:
        for start in range(0, workflows, 500):
            batch = range(start, min(start + 500, workflows))
            await asyncio.gather(
                *(
                    runtime.coordinator.start(StartWorkflow(workflow_id=0, name=f"bench-{i}"))
                    for i in batch
                )
            )
            await runtime.coordinator.wait_idle()
        return await runtime.store.head_position()
    finally:
        await runtime.stop()


async def scan(store: EventStore) -> int:
    """Read every event once: the floor under any tool that looks at the whole log."""
    after, count = 0, 0
    while events := await store.read_all(after, 5000):
        count += len(events)
        after = events[-1].position
    return count


async def measure(path: Path) -> None:
    """Time the tools on the filled file and print rates and ratios."""
    backend = make_backend(Database(backend="sqlite", path=str(path)))
    store = backend.store
    await store.open()
    try:
        began = time.perf_counter()
        events = await scan(store)
        scan_rate = events / (time.perf_counter() - began)
        report = await verify(store)
        assert report.ok, report.violations[:3]
        rebuilt = await rebuilding.rebuild(store, backend.tables, lambda line: None)
        checked, differences = await rebuilding.check(store, backend.tables, lambda line: None)
        assert not differences, differences[:3]
    finally:
        await store.close()
    print(f"log:                         {events} events ({path.stat().st_size / 1e6:.1f} MB)")
    print(f"bare scan (reference):       {scan_rate:,.0f} events/s")
    print(
        f"verify:                      {report.rate:,.0f} events/s "
        f"({report.seconds:.2f} s, ratio to scan {report.rate / scan_rate:.2f})"
    )
    print(
        f"rebuild-projections:         {rebuilt.rate:,.0f} events/s "
        f"(ratio to scan {rebuilt.rate / scan_rate:.2f})"
    )
    print(
        f"rebuild-projections --check: {checked.rate:,.0f} events/s "
        f"(ratio to scan {checked.rate / scan_rate:.2f})"
    )


def main() -> None:
    """Fill a temporary database and measure."""
    parser = argparse.ArgumentParser(description="history tools benchmark")
    parser.add_argument("--workflows", type=int, default=7000, help="15 events each")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.db"
        began = time.perf_counter()
        events = asyncio.run(fill(path, args.workflows))
        print(f"filled {events} events in {time.perf_counter() - began:.1f} s")
        asyncio.run(measure(path))


if __name__ == "__main__":
    main()
