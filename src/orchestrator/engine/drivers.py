"""At most one asyncio task drives each aggregate in this process; each run it hands to a
worker thread gets a cancellation signal, and stopping lets runs finish within a grace period.

With `ownership` (processes sharing a PostgreSQL log), a driver first takes its aggregate's lease
and ends at once if another process holds it; its appends carry the lease's fence; an append
refused for a lost lease ends it quietly (its successor drives the aggregate now).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

from orchestrator.engine.ownership import HandOver, Ownership
from orchestrator.eventstore.errors import LeaseLost

log = logging.getLogger(__name__)


class Drivers:
    """Keeps one running asyncio task per key (a workflow or task id) and reaps finished ones."""

    def __init__(self, kind: str, ownership: Ownership | None = None) -> None:
        self._kind = kind
        self._ownership = ownership
        self._tasks: dict[int, asyncio.Task[Any]] = {}
        self._signals: dict[int, threading.Event] = {}

    def __len__(self) -> int:
        """How many keys are being driven."""
        return len(self._tasks)

    def is_driving(self, key: int) -> bool:
        """True while a task drives `key`."""
        task = self._tasks.get(key)
        return task is not None and not task.done()

    def start(self, key: int, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        """Run `work` as the driver of `key`, unless one already runs (then `work` is closed)."""
        if self.is_driving(key):
            work.close()
            return None
        if self._ownership is not None and self._ownership.shared:
            work = self._leased(self._ownership, key, work)
        task = asyncio.create_task(work, name=f"{self._kind}-{key}")
        self._tasks[key] = task
        task.add_done_callback(lambda done: self._forget(key, done))
        return task

    async def _leased(self, ownership: Ownership, key: int, work: Coroutine[Any, Any, Any]) -> Any:
        """`work` under the lease of `key`: None without running it if another process holds
        it, or once an append finds it taken over."""
        try:
            taken = await ownership.acquire(self._kind, key)
        except BaseException:
            work.close()
            raise
        if not taken:
            work.close()
            log.debug("%s %d is driven by another process", self._kind, key)
            return None
        ownership.enter(ownership.fence_for(self._kind, key))
        try:
            result = await work
        except LeaseLost:
            ownership.lost(self._kind, key)
            log.warning(
                "%s %d was taken over by another process; this driver ends", self._kind, key
            )
            return None
        except HandOver:
            ownership.hand_off(self._kind, key)
            await ownership.release(self._kind, key, done=False)
            return None
        except asyncio.CancelledError:
            # Stopping (the lease is handed over with all the others) or lost (gone already).
            ownership.lost(self._kind, key)
            raise
        except Exception:
            await ownership.release(self._kind, key, done=False)
            raise
        await ownership.release(self._kind, key, done=True)
        return result

    def lose(self, key: int) -> None:
        """Stop driving `key` now: its lease went to another process."""
        task = self._tasks.get(key)
        if task is not None:
            task.cancel()
        self.cancel_running(key)

    def _forget(self, key: int, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled() and task.exception() is not None:
            log.error("driving %s %d failed", self._kind, key, exc_info=task.exception())

    @contextlib.contextmanager
    def running(self, key: int) -> Iterator[threading.Event]:
        """The cancellation signal of the run `key`'s driver hands to a thread now."""
        signal = threading.Event()
        self._signals[key] = signal
        try:
            yield signal
        finally:
            if self._signals.get(key) is signal:
                del self._signals[key]

    def cancel_running(self, key: int) -> None:
        """Tell the run in a thread for `key`, if any, to stop (its result is discarded)."""
        signal = self._signals.get(key)
        if signal is not None:
            signal.set()

    async def stop(self, grace: float = 0.0) -> None:
        """Let drivers finish the runs in hand for up to `grace` seconds, then cancel the rest.

        A cancelled driver records nothing more, so its run stays recorded as started and runs
        again at the next start; its thread is then told to stop, freeing it if the run watches
        its signal.
        """
        if grace > 0:
            await self.wait_idle(grace)
        tasks = list(self._tasks.values())
        signals = list(self._signals.values())  # a cancelled driver drops its own
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # Only now: a driver still alive would record the interrupted run as failed.
        for signal in signals:
            signal.set()

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no driver runs, at most `timeout` seconds; True if none runs."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._tasks:
                    await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        return not self._tasks
