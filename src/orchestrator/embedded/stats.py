"""What `Orchestrator.stats()` answers: counters, as `GET /execution/stats` gives them."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.engine.executor import WorkerPool
from orchestrator.projections.models import TASKS, WORKFLOWS
from orchestrator.runtime import Runtime


@dataclass(frozen=True)
class PoolStats:
    """One worker pool: its threads, those busy, and the work waiting for one."""

    max_workers: int
    active_tasks: int
    queue_size: int


@dataclass(frozen=True)
class Stats:
    """Counts by state and the pools' figures (constant time however many workflows)."""

    #: Workflows by state name (every state present; deleted workflows not counted).
    workflows: dict[str, int]
    #: Standalone tasks by status name (PENDING, RUNNING, ...; deleted ones not counted).
    tasks: dict[str, int]
    #: The MAX_WORKERS threads that run workflow steps.
    worker_pool: PoolStats
    #: The TASK_WORKERS threads that run standalone tasks.
    task_pool: PoolStats


def stats_of(runtime: Runtime) -> Stats:
    """The runtime's counters now (as of the read models' position)."""
    return Stats(
        workflows=runtime.projector.counts(WORKFLOWS),
        tasks=runtime.projector.counts(TASKS),
        worker_pool=_pool_stats(runtime.pool),
        task_pool=_pool_stats(runtime.task_pool),
    )


def _pool_stats(pool: WorkerPool) -> PoolStats:
    return PoolStats(
        max_workers=pool.max_workers, active_tasks=pool.active_tasks, queue_size=pool.queue_size
    )
