"""The worker pools: run blocking tasks in threads, report how busy they are, and hand each task
a cancellation signal it can watch.

Python cannot stop a thread from outside, so cancelling (a cancelled workflow, a deleted task, a
timeout, shutdown) is cooperative: the task's `threading.Event` is set, and a task that waits on
it (the built-in `sleep`, the simulated work of the built-in steps) returns at once and frees its
thread. A task that never looks at it runs on and its result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


#: Worker threads are named with this prefix (the CLI looks for them at exit).
TASK_THREAD_PREFIX = "orchestrator-task"


class TaskTimedOut(Exception):
    """The task ran longer than the task timeout."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"task timed out after {seconds:g} s")


class TaskAborted(RuntimeError):
    """A task ended with something other than an ordinary exception (SystemExit, ...)."""


class TaskCancelled(Exception):
    """Raised by a task that stopped early because its cancellation signal was set."""


class NotStarted(Exception):
    """The pool is draining (the server stops): queued work is not begun, and nothing about it
    is to be recorded; it is still recorded as started and runs at the next start."""


_running_task = threading.local()


def cancellation() -> threading.Event:
    """The cancellation signal of the task running in this thread.

    Standalone task types call it (their work takes no arguments); workflow steps have the same
    event as `TaskContext.cancelled`. Outside a pool thread it is a fresh event nobody sets.
    """
    event: threading.Event | None = getattr(_running_task, "cancel", None)
    return event if event is not None else threading.Event()


class WorkerPool:
    """A ThreadPoolExecutor of `max_workers` threads with a count of running and queued tasks.

    The service has two: MAX_WORKERS threads for workflow steps and TASK_WORKERS threads for
    standalone tasks, so long tasks cannot hold every step back (and the other way round).
    """

    def __init__(self, max_workers: int, name: str = "steps") -> None:
        self.max_workers = max_workers
        self.name = name
        self._pool = ThreadPoolExecutor(
            max_workers, thread_name_prefix=f"{TASK_THREAD_PREFIX}-{name}"
        )
        self._lock = threading.Lock()
        self._submitted = 0
        self._running = 0
        self._finished = 0
        #: Set when the server begins to stop: work still queued is not begun.
        self.draining = False

    def drain(self) -> None:
        """Begin nothing more that is queued (it fails with NotStarted); running work goes on."""
        self.draining = True

    @property
    def active_tasks(self) -> int:
        """Tasks running in a thread now."""
        return self._running

    @property
    def queue_size(self) -> int:
        """Tasks handed to the pool and waiting for a free thread."""
        return self._submitted - self._running - self._finished

    async def run(
        self,
        function: Callable[[], T],
        timeout: float,
        on_start: Callable[[], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> T:
        """Run `function` in a thread; the timeout counts from when a thread picks it up.

        `on_start` is called on the event loop when a thread picks the function up. `cancel` is
        the task's cancellation signal (`cancellation()` in the thread); it is set on timeout,
        and a task that ignores it runs on while its result is dropped.
        """
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[T] = loop.create_future()
        timer: asyncio.TimerHandle
        signal = cancel if cancel is not None else threading.Event()
        #: time.monotonic() when a thread picked the function up (set in that thread).
        picked_at: float | None = None

        def expire() -> None:
            nonlocal timer
            if outcome.done():
                return
            # Armed from the submission (or an earlier check), the timeout counts from the
            # pick-up: wait on while the thread has not had the function for `timeout` yet.
            left = timeout if picked_at is None else picked_at + timeout - time.monotonic()
            if left > 0:
                timer = loop.call_later(left, expire)
                return
            outcome.set_exception(TaskTimedOut(timeout))
            signal.set()

        def started(notify: Callable[[], None]) -> None:
            if not outcome.done():
                notify()

        def settle(value: Any, failed: bool) -> None:
            timer.cancel()
            if outcome.done():
                return
            if failed:
                outcome.set_exception(value)
            else:
                outcome.set_result(value)

        def work() -> None:
            if self.draining:
                with self._lock:
                    self._finished += 1
                _call_soon(loop, settle, NotStarted(), True)
                return
            nonlocal picked_at
            with self._lock:
                self._running += 1
            picked_at = time.monotonic()
            if on_start is not None:  # a hand-over to the loop only for those who asked
                _call_soon(loop, started, on_start)
            failed = False
            _running_task.cancel = signal
            try:
                value: Any = function()
            except Exception as exc:  # an ordinary task failure: the step fails with it
                value, failed = exc, True
                if isinstance(exc, StopIteration):  # a Future refuses to carry StopIteration
                    value = TaskAborted(f"the task raised StopIteration: {exc}")
            except BaseException as exc:
                # SystemExit or KeyboardInterrupt from a task must fail its step, not end the
                # server (and, as the step would resume at every start, end it again and again).
                value, failed = TaskAborted(f"the task raised {type(exc).__name__}: {exc}"), True
            finally:
                _running_task.cancel = None
                with self._lock:
                    self._running -= 1
                    self._finished += 1
            _call_soon(loop, settle, value, failed)

        # Armed from the submission: `expire` waits on until the thread has had the function
        # for `timeout`, so no hand-over to the loop is needed to arm it at the pick-up.
        timer = loop.call_later(timeout, expire)
        with self._lock:
            self._submitted += 1
        try:
            submitted = self._pool.submit(work)
        except RuntimeError:  # the pool is shut down
            with self._lock:
                self._submitted -= 1
            timer.cancel()
            raise

        def dropped(future: Future[None]) -> None:
            # Taken off the queue before any thread began it (a pool shut down, or the caller
            # gave up): it no longer counts as queued, and it will never begin.
            if future.cancelled():
                with self._lock:
                    self._finished += 1
                _call_soon(loop, settle, NotStarted(), True)

        submitted.add_done_callback(dropped)
        try:
            return await outcome
        except asyncio.CancelledError:
            timer.cancel()
            submitted.cancel()
            raise

    def shutdown(self) -> None:
        """Drop queued tasks; running threads finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    # The loop may be closed when a task outlives the server (shutdown while a thread runs).
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)
