"""The worker pool: runs blocking tasks in threads and reports how busy it is."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class TaskTimedOut(Exception):
    """The task ran longer than the task timeout."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"task timed out after {seconds:g} s")


class WorkerPool:
    """A ThreadPoolExecutor of MAX_WORKERS threads with a count of running and queued tasks."""

    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="orchestrator-task")
        self._lock = threading.Lock()
        self._submitted = 0
        self._running = 0
        self._finished = 0

    @property
    def active_tasks(self) -> int:
        """Tasks running in a thread now."""
        return self._running

    @property
    def queue_size(self) -> int:
        """Tasks handed to the pool and waiting for a free thread."""
        return self._submitted - self._running - self._finished

    async def run(self, function: Callable[[], T], timeout: float) -> T:
        """Run `function` in a thread; the timeout counts from when a thread picks it up.

        On timeout the thread cannot be stopped, so it runs on and its result is dropped.
        """
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()

        def work() -> T:
            with self._lock:
                self._running += 1
            loop.call_soon_threadsafe(_resolve, started)
            try:
                return function()
            finally:
                with self._lock:
                    self._running -= 1
                    self._finished += 1

        with self._lock:
            self._submitted += 1
        try:
            future = loop.run_in_executor(self._pool, work)
        except RuntimeError:
            with self._lock:
                self._submitted -= 1
            raise
        try:
            waiters: list[asyncio.Future[Any]] = [started, future]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            if future.cancel():  # never started: it no longer counts as queued
                with self._lock:
                    self._finished += 1
            raise
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise TaskTimedOut(timeout) from None

    def shutdown(self) -> None:
        """Drop queued tasks; running threads finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
