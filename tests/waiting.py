"""The one "poll until" helper of the test suites, for blocking and for async probes.

A test that waits for something the code under test does in the background polls a probe until
a predicate accepts its value, and fails after a deadline naming what it waited for and the last
value seen, so a timeout says what was missing instead of only that time ran out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: How long a wait may take unless the caller says otherwise: generous enough for a real server.
DEADLINE = 15.0


def wait_for(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    what: str,
    timeout: float = DEADLINE,
    interval: float = 0.01,
) -> T:
    """Call `probe` until `done` accepts its value; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what}; last: {value!r}"
            )
        time.sleep(interval)  # poll interval; the deadline above bounds the wait


async def wait_for_async(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    what: str,
    timeout: float = DEADLINE,
    interval: float = 0.05,
) -> T:
    """`wait_for` for an async probe; sleeps without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what}; last: {value!r}"
            )
        await asyncio.sleep(interval)  # poll interval; the deadline above bounds the wait
