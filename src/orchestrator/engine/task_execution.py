"""Running one attempt of a task: a plain function in a worker thread, an `async def` on the
event loop; each with its timeout, its cancellation signal, and its result checked for the log.
And the progress reporter that turns `ctx.progress` calls into at most one event a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from orchestrator.engine.executor import (
    NotStarted,
    TaskAborted,
    TaskCancelled,
    TaskTimedOut,
    WorkerPool,
)
from orchestrator.engine.task_context import TaskContext
from orchestrator.engine.task_specs import TaskSpec
from orchestrator.engine.tasks import checked_result

log = logging.getLogger(__name__)

#: How often an async task's cancellation signal is looked at (the signal is a thread event).
_CANCEL_POLL_SECONDS = 0.05
#: A progress note is cut to this many characters (it is recorded in the log).
MAX_NOTE_CHARS = 500


async def run_attempt(
    spec: TaskSpec,
    context: TaskContext,
    pool: WorkerPool,
    timeout: float,
    on_start: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """The attempt's result as the log will store it; the task's exception, TaskTimedOut,
    TaskCancelled, or NotStarted (the server stops before it began)."""
    if not spec.is_async:
        function = spec.function
        return await pool.run(
            lambda: checked_result(function(context)),
            timeout,
            on_start=on_start,
            cancel=context.cancelled,
        )
    if pool.draining:
        raise NotStarted()
    if on_start is not None:
        on_start()
    return checked_result(await _run_on_loop(spec, context, timeout))


async def _run_on_loop(spec: TaskSpec, context: TaskContext, timeout: float) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    running: asyncio.Future[Any] = asyncio.ensure_future(_guarded(spec, context))
    try:
        while not running.done():
            left = deadline - loop.time()
            if left <= 0:
                context.cancelled.set()
                raise TaskTimedOut(timeout)
            if context.cancelled.is_set():
                raise TaskCancelled(f"task {spec.name!r} was cancelled")
            await asyncio.wait({running}, timeout=min(left, _CANCEL_POLL_SECONDS))
        try:
            return running.result()  # SystemExit and the like: TaskAborted already (_guarded)
        except asyncio.CancelledError:
            raise TaskCancelled(f"task {spec.name!r} was cancelled") from None
    finally:
        if not running.done():
            running.cancel()
            with contextlib.suppress(BaseException):
                await running


async def _guarded(spec: TaskSpec, context: TaskContext) -> Any:
    """The task's coroutine, with SystemExit and the like turned into a failed attempt inside
    it: a task (asyncio's) that raises them re-raises them out of the event loop, which would
    end the server (and, as the step resumes at each start, end it again)."""
    try:
        return await spec.function(context)
    except (Exception, asyncio.CancelledError):
        raise
    except BaseException as exc:
        raise TaskAborted(f"the task raised {type(exc).__name__}: {exc}") from None


class ProgressReporter:
    """Records a task's progress at most once per `interval` seconds, the latest report winning.

    `report` may be called from any thread, as often as the task likes; recording happens on
    the event loop. After `close` (the attempt ended) nothing more is recorded.
    """

    def __init__(
        self,
        record: Callable[[float, str | None], Awaitable[None]],
        *,
        interval: float = 1.0,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._record = record
        self._interval = interval
        self._lock = threading.Lock()
        self._pending: tuple[float, str | None] | None = None
        self._scheduled = False
        self._closed = False
        self._last = -math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._writing: set[asyncio.Task[None]] = set()

    def report(self, fraction: float, note: str | None) -> None:
        """Keep the latest report; make sure one write is on its way."""
        if note is not None and len(note) > MAX_NOTE_CHARS:
            note = note[: MAX_NOTE_CHARS - 1] + "…"
        with self._lock:
            if self._closed:
                return
            self._pending = (fraction, note)
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop is gone: the server stopped
            self._loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:
        delay = max(0.0, self._last + self._interval - self._loop.time())
        self._timer = self._loop.call_later(delay, self._flush)

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
            self._scheduled = False
            if self._closed or pending is None:
                return
        self._last = self._loop.time()
        writing = self._loop.create_task(self._write(*pending))
        self._writing.add(writing)
        writing.add_done_callback(self._writing.discard)

    async def _write(self, fraction: float, note: str | None) -> None:
        try:
            await self._record(fraction, note)
        except Exception as exc:  # progress is best effort: the step's outcome is what counts
            log.debug("progress not recorded: %s", exc)

    def close(self) -> None:
        """The attempt is over: drop what is pending."""
        with self._lock:
            self._closed = True
            self._pending = None
        if self._timer is not None:
            self._timer.cancel()
