"""At most one asyncio task drives each aggregate in this process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Drivers:
    """Keeps one running asyncio task per key (a workflow or task id) and reaps finished ones."""

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._tasks: dict[int, asyncio.Task[Any]] = {}

    def is_driving(self, key: int) -> bool:
        """True while a task drives `key`."""
        task = self._tasks.get(key)
        return task is not None and not task.done()

    def start(self, key: int, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        """Run `work` as the driver of `key`, unless one already runs (then `work` is closed)."""
        if self.is_driving(key):
            work.close()
            return None
        task = asyncio.create_task(work, name=f"{self._kind}-{key}")
        self._tasks[key] = task
        task.add_done_callback(lambda done: self._forget(key, done))
        return task

    def _forget(self, key: int, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled() and task.exception() is not None:
            log.error("driving %s %d failed", self._kind, key, exc_info=task.exception())

    async def stop(self) -> None:
        """Cancel every driver and wait for them to end."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def wait_idle(self) -> None:
        """Wait until no driver runs."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
