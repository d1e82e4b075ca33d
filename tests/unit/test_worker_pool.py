"""The worker pool's cancellation signal and draining, the backlog bound, and the sized cache."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from orchestrator.engine.backlog import Backlog, TooBusy
from orchestrator.engine.executor import (
    NotStarted,
    TaskCancelled,
    TaskTimedOut,
    WorkerPool,
    cancellation,
)
from orchestrator.engine.task_types import sleep_work
from orchestrator.sized_cache import SizedCache, charge

DEADLINE = 5.0


@pytest.mark.anyio
async def test_a_timed_out_sleep_is_told_to_stop_and_frees_its_thread() -> None:
    pool = WorkerPool(1)
    try:
        with pytest.raises(TaskTimedOut):
            await pool.run(sleep_work({"duration": 3600}), timeout=0.05)
        began = time.monotonic()
        while pool.active_tasks:
            assert time.monotonic() - began < 0.5, "the sleep kept its thread"
            await asyncio.sleep(0.005)
    finally:
        pool.shutdown()


@pytest.mark.anyio
async def test_work_dropped_from_the_queue_by_a_shut_down_ends_not_started() -> None:
    """One thread, busy: the work queued behind it is dropped by the shut-down and its caller
    hears NotStarted as it is dropped, instead of waiting for ever."""
    pool = WorkerPool(1)
    release = threading.Event()
    busy = asyncio.ensure_future(pool.run(release.wait, DEADLINE))
    while not pool.active_tasks:
        await asyncio.sleep(0.005)
    queued = asyncio.ensure_future(pool.run(lambda: "never", 0.1))
    await asyncio.sleep(0.01)
    pool.shutdown()
    release.set()
    with pytest.raises(NotStarted):
        await asyncio.wait_for(queued, 2.0)
    assert await busy is True


@pytest.mark.anyio
@pytest.mark.parametrize("with_on_start", [False, True])
async def test_the_timeout_counts_from_the_pick_up_not_the_time_spent_queued(
    with_on_start: bool,
) -> None:
    """One thread: the second function waits 0.3 s for it, then runs 0.1 s of its 0.2 s
    timeout (it would time out if the wait counted); a third runs 0.4 s and times out."""
    pool = WorkerPool(1)
    started: list[float] = []
    on_start = (lambda: started.append(time.monotonic())) if with_on_start else None

    def sleeping(seconds: float, answer: str) -> Callable[[], str]:
        def work() -> str:
            time.sleep(seconds)
            return answer

        return work

    try:
        first = asyncio.ensure_future(pool.run(sleeping(0.3, "first"), DEADLINE))
        second = asyncio.ensure_future(pool.run(sleeping(0.1, "second"), 0.2, on_start=on_start))
        assert await first == "first"
        assert await second == "second"
        with pytest.raises(TaskTimedOut):
            await pool.run(lambda: time.sleep(0.4), 0.15, on_start=on_start)
        assert len(started) == (2 if with_on_start else 0)
    finally:
        pool.shutdown()


@pytest.mark.anyio
async def test_setting_the_signal_stops_a_running_sleep_with_task_cancelled() -> None:
    pool = WorkerPool(1)
    signal = threading.Event()
    try:
        running = asyncio.ensure_future(
            pool.run(sleep_work({"duration": 3600}), DEADLINE, cancel=signal)
        )
        while not pool.active_tasks:
            await asyncio.sleep(0.005)
        signal.set()
        with pytest.raises(TaskCancelled):
            await asyncio.wait_for(running, 0.5)
    finally:
        pool.shutdown()


@pytest.mark.anyio
async def test_a_draining_pool_finishes_running_work_and_begins_none_that_is_queued() -> None:
    pool = WorkerPool(1)
    gate = threading.Event()
    try:
        first = asyncio.ensure_future(pool.run(lambda: gate.wait(DEADLINE), DEADLINE))
        queued = asyncio.ensure_future(pool.run(lambda: "ran", DEADLINE))
        while not pool.active_tasks:
            await asyncio.sleep(0.005)

        pool.drain()
        gate.set()

        assert await first is True
        with pytest.raises(NotStarted):
            await queued
        assert (pool.active_tasks, pool.queue_size) == (0, 0)
    finally:
        pool.shutdown()


def test_outside_a_pool_thread_the_signal_is_a_fresh_unset_event() -> None:
    assert not cancellation().is_set()


def test_the_backlog_admits_work_below_the_bound_counting_places_held_meanwhile() -> None:
    pool = WorkerPool(1)
    driven = 2  # one on the thread, one waiting
    backlog = Backlog(pool, lambda: driven, limit=2, what="steps")
    try:
        # One waits, and the place this admission holds makes two: the next one is refused.
        with backlog.admit(), pytest.raises(TooBusy) as refused, backlog.admit():
            pass
        assert str(refused.value).startswith("2 steps are waiting for a worker thread")
        with backlog.admit():
            pass
    finally:
        pool.shutdown()


def test_a_sized_cache_evicts_the_oldest_past_either_bound() -> None:
    cache: SizedCache[str, str] = SizedCache(max_entries=3, max_bytes=100)
    for key in "abc":
        cache.put(key, key, 30)
    cache.put("d", "d", 30)  # four entries: "a" goes
    assert ("a" in cache, len(cache), cache.bytes) == (False, 3, 90)
    cache.put("b", "b", 60)  # b again, bigger: 120 bytes, so the oldest, "c", goes
    assert (cache.get("c"), cache.get("d"), cache.get("b"), cache.bytes) == (None, "d", "b", 90)
    cache.put("huge", "h", 500)  # alone over the budget: not kept, and nothing else is
    assert (len(cache), cache.bytes) == (0, 0)


def test_charge_counts_json_values_not_only_bytes() -> None:
    blob = b'{"blob":"' + b"a" * 1000 + b'"}'
    keys = b"{" + b",".join(b'"k%d":%d' % (n, n) for n in range(100)) + b"}"
    assert charge(blob) == len(blob) + 32
    assert charge(keys) == len(keys) + 32 * 199
