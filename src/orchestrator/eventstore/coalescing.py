"""Small statements that many tasks of one process send at once (ids, lease takes and lets-go),
sent as one statement per round trip instead of one each.

The first call goes out at once, so a lone caller waits no longer than before; the calls made
while a statement is in flight queue up and go together in the next one. Under load that turns
dozens of round trips into a few, which is most of what they cost a busy server and database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: The most calls one statement carries.
MAX_BATCH = 256


class Coalescer(Generic[T, R]):
    """Runs `run(items)` for the calls queued since the last run; each caller gets its result
    (`run` returns one per item, in order) or the run's exception."""

    def __init__(self, run: Callable[[Sequence[T]], Awaitable[Sequence[R]]]) -> None:
        self._run = run
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """`item`'s result, from the next statement that carries it."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                results = await self._run([item for item, _ in batch])
            except BaseException as exc:  # every caller hears of it; none hangs
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
