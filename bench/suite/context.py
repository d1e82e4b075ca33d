"""What every figure function is given: the counts of this run, the database kind, a working
folder, progress lines, and one place that stops whatever the run started."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

if TYPE_CHECKING:
    from suite.targets import Target

T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    """How much each figure does: the full run, `--quick`, and `--scale` (a factor on every
    count and duration, for tests)."""

    quick: bool = False
    scale: float = 1.0
    #: Connections posting workflows (e2e, the large run).
    concurrency: int = 16

    def count(self, full: int, quick: int, least: int = 1) -> int:
        """`full` (or `quick`) times the scale, at least `least`."""
        return max(least, round((quick if self.quick else full) * self.scale))

    def seconds(self, full: float, quick: float, least: float = 0.5) -> float:
        """A duration: `full` (or `quick`) times the scale, at least `least`."""
        return max(least, (quick if self.quick else full) * self.scale)

    @property
    def e2e_workflows(self) -> int:
        """Workflows posted for e2e_workflows_per_s (and the DBOS reference)."""
        return self.count(1000, 200)

    @property
    def history_events(self) -> int:
        """Events in the log that replay, rebuild and verify read."""
        return self.count(1_000_000, 100_000, least=15)

    @property
    def small_workflows(self) -> int:
        """Workflows in the store for stats_p50_ms_small."""
        return self.count(1000, 1000)

    @property
    def large_workflows(self) -> int:
        """Workflows run through the server for the `_large` figures."""
        return max(self.small_workflows, self.count(100_000, 20_000))

    @property
    def recovery_workflows(self) -> int:
        """Workflows mid-step when the server is killed."""
        return self.count(100, 100)

    @property
    def sse_clients(self) -> int:
        """Clients of /events/stream for sse_lag_p99_ms."""
        return self.count(200, 200)

    @property
    def sse_seconds(self) -> float:
        """How long workflows run while the event-stream clients listen."""
        return self.seconds(20, 6)

    @property
    def read_seconds(self) -> float:
        """How long each GET load (the orchestrator's, the reference's) lasts."""
        return self.seconds(10, 5)

    @property
    def append_seconds(self) -> float:
        """How long each append load (the store's, raw SQL's) lasts."""
        return self.seconds(5, 2)

    @property
    def stats_requests(self) -> int:
        """GET /execution/stats requests timed for each stats figure."""
        return self.count(500, 200, least=20)


class Context:
    """The run's shared state; `stack` is closed at the end, also on an error or Ctrl-C."""

    def __init__(self, plan: Plan, target: Target, workdir: Path) -> None:
        self.plan = plan
        self.target = target
        self.workdir = workdir
        self.stack = contextlib.AsyncExitStack()
        self._began = time.monotonic()
        self._shared: dict[str, asyncio.Future[Any]] = {}
        self._folders = 0
        #: Notes for the table, by figure name (how a figure was measured, what it saw).
        self.notes: dict[str, str] = {}

    def say(self, text: str) -> None:
        """A progress line on stderr, with the seconds since the run began."""
        print(f"[{time.monotonic() - self._began:6.1f}s] {text}", file=sys.stderr, flush=True)

    def note(self, figure: str, text: str) -> None:
        """Add `text` to what the table says under `figure`."""
        self.notes[figure] = "; ".join(filter(None, [self.notes.get(figure, ""), text]))

    def folder(self, label: str) -> Path:
        """A new empty folder in the run's working folder."""
        self._folders += 1
        path = self.workdir / f"{self._folders:02d}-{label}"
        path.mkdir()
        return path

    async def shared(self, key: str, make: Callable[[], Awaitable[T]]) -> T:
        """`make()`'s result, made once per run however many figures ask for it."""
        if key not in self._shared:
            self._shared[key] = asyncio.ensure_future(make())
        return cast(T, await self._shared[key])


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's, where it is installed (the server runs on it too): load generators and
    clients in the suite's processes then cost less CPU; None for asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
