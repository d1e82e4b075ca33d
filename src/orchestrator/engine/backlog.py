"""Backpressure: how much accepted work waits for a worker thread, and refusing more past a bound.

Every accepted start, `next`, retry or task is an asyncio driver that holds the aggregate in
memory and, soon, a place in the worker pool's queue. Without a bound a burst of commands (or
threads held by hour-long tasks) grows that queue, and the process's memory, without limit while
clients wait far past their timeouts. Instead a command that would add work is refused at once,
before anything is recorded, while more than MAX_QUEUED_STEPS steps or runs are waiting: the
client is told to come back (429 with Retry-After), and the work already accepted keeps going.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from orchestrator.engine.executor import WorkerPool

#: Seconds a refused client is told to wait (Retry-After) before it tries again.
RETRY_AFTER_SECONDS = 1


class TooBusy(Exception):
    """More than MAX_QUEUED_STEPS steps or task runs wait for a thread: try again later."""

    def __init__(self, what: str, waiting: int, limit: int) -> None:
        self.waiting = waiting
        self.limit = limit
        self.retry_after = RETRY_AFTER_SECONDS
        super().__init__(
            f"{waiting} {what} are waiting for a worker thread, the limit is {limit} "
            f"(MAX_QUEUED_STEPS); nothing was recorded, try again in {self.retry_after} s"
        )


class Backlog:
    """Counts the work waiting for one pool's threads and admits new work below the bound."""

    def __init__(self, pool: WorkerPool, in_flight: Callable[[], int], limit: int, what: str):
        self._pool = pool
        self._in_flight = in_flight
        self._limit = limit
        self._what = what
        self._reserved = 0

    @property
    def waiting(self) -> int:
        """Work accepted and not running on a thread: queued in the pool, or driven beyond the
        pool's size (between two steps, or about to be queued), or being recorded right now."""
        beyond_threads = self._in_flight() - self._pool.max_workers
        return self._reserved + max(self._pool.queue_size, beyond_threads, 0)

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place for one command's work while it is recorded; TooBusy past the bound.

        The place counts from the check, so a burst of concurrent commands that all pass the
        check before any of them is recorded cannot overshoot the bound.
        """
        waiting = self.waiting
        if waiting >= self._limit:
            raise TooBusy(self._what, waiting, self._limit)
        self._reserved += 1
        try:
            yield
        finally:
            self._reserved -= 1
