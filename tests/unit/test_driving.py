"""The driving skeleton and the retry policy shared by workflows and standalone tasks, with
in-memory fakes: no store, no pool, no HTTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

import pytest

from orchestrator.domain.errors import DomainError
from orchestrator.engine.driving import drive
from orchestrator.engine.retry import FIRST_RETRY, LAST_RETRY, retry_store_errors
from orchestrator.eventstore.errors import StoreUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Counter:
    """A stand-in aggregate: it needs steps until `version` reaches `goal`."""

    version: int
    goal: int = 3


class FakeLog:
    """Holds one Counter; steps bump it, or are refused while `refuse` says so."""

    def __init__(self, counter: Counter | None, *, refuse: bool = False) -> None:
        self.counter = counter
        self.refuse = refuse
        self.loads = 0
        self.steps = 0

    async def load(self) -> Counter | None:
        self.loads += 1
        return self.counter

    def next_step(self, counter: Counter) -> Awaitable[Counter | None] | None:
        if counter.version >= counter.goal:
            return None
        return self._step(counter)

    async def _step(self, counter: Counter) -> Counter | None:
        self.steps += 1
        if self.refuse:
            return None
        self.counter = Counter(counter.version + 1, counter.goal)
        return self.counter


def never() -> bool:
    return False


# The skeleton ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_loop_steps_until_nothing_is_left_to_do() -> None:
    fake = FakeLog(Counter(0))

    last = await drive(fake.load, fake.next_step, draining=never)

    assert last == Counter(3)
    assert (fake.loads, fake.steps) == (1, 3)


@pytest.mark.anyio
async def test_the_loop_stops_when_a_refusal_changes_nothing() -> None:
    fake = FakeLog(Counter(0), refuse=True)

    last = await drive(fake.load, fake.next_step, draining=never)

    assert last == Counter(0)
    assert (fake.loads, fake.steps) == (2, 1)  # one step refused, one look again, no spinning


@pytest.mark.anyio
async def test_after_a_refusal_the_loop_goes_on_from_what_moved_on() -> None:
    fake = FakeLog(Counter(0), refuse=True)
    original = fake.load

    async def load_moved_on() -> Counter | None:
        if fake.loads == 1:  # the refused step's aggregate moved on elsewhere
            fake.refuse = False
            fake.counter = Counter(2)
        return await original()

    last = await drive(load_moved_on, fake.next_step, draining=never)

    assert last == Counter(3)
    assert (fake.loads, fake.steps) == (2, 2)


@pytest.mark.anyio
async def test_the_loop_stops_when_the_aggregate_is_gone() -> None:
    fake = FakeLog(None)

    assert await drive(fake.load, fake.next_step, draining=never) is None
    assert fake.steps == 0


@pytest.mark.anyio
async def test_a_draining_pool_finishes_the_step_in_hand_and_begins_no_other() -> None:
    fake = FakeLog(Counter(0))

    last = await drive(fake.load, fake.next_step, draining=lambda: fake.steps >= 1)

    assert last == Counter(1)
    assert fake.steps == 1


@pytest.mark.anyio
async def test_cancellation_ends_the_loop() -> None:
    started = asyncio.Event()
    fake = FakeLog(Counter(0))

    async def blocked(counter: Counter) -> Counter | None:
        started.set()
        await asyncio.Event().wait()  # a run that never finishes by itself
        return None

    driver = asyncio.ensure_future(drive(fake.load, blocked, draining=never))
    await started.wait()
    driver.cancel()

    with pytest.raises(asyncio.CancelledError):
        await driver
    assert fake.loads == 1  # nothing more was read or recorded after the cancellation


# The retry policy -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_store_error_is_retried_with_growing_delays_up_to_the_cap() -> None:
    delays: list[float] = []
    failures = 9

    async def action() -> str:
        nonlocal failures
        if failures:
            failures -= 1
            raise StoreUnavailable("disk busy")
        return "recorded"

    async def sleep(delay: float) -> None:
        delays.append(delay)

    result = await retry_store_errors(action, what="test: could not record", log=log, sleep=sleep)

    assert result == "recorded"
    doubling = [FIRST_RETRY * 2**n for n in range(6)]  # 0.1 ... 3.2 s
    assert doubling[-1] < LAST_RETRY < doubling[-1] * 2
    assert delays == [*doubling, LAST_RETRY, LAST_RETRY, LAST_RETRY]


@pytest.mark.anyio
async def test_each_retry_is_logged_with_what_failed(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def action() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreUnavailable("disk busy")
        return calls

    async def sleep(delay: float) -> None:
        pass

    with caplog.at_level(logging.WARNING):
        assert (
            await retry_store_errors(action, what="task 7: could not read it", log=log, sleep=sleep)
            == 2
        )

    assert "task 7: could not read it (disk busy); retrying in 0.1s" in caplog.messages


@pytest.mark.anyio
async def test_any_other_error_is_passed_on_at_once() -> None:
    calls = 0

    async def action() -> None:
        nonlocal calls
        calls += 1
        raise DomainError("refused")

    async def sleep(delay: float) -> None:
        raise AssertionError("a refusal is not retried")

    with pytest.raises(DomainError):
        await retry_store_errors(action, what="x", log=log, sleep=sleep)
    assert calls == 1


@pytest.mark.anyio
async def test_cancellation_ends_the_retrying() -> None:
    async def action() -> None:
        raise StoreUnavailable("down for good")

    retrying = asyncio.ensure_future(retry_store_errors(action, what="x", log=log))
    await asyncio.sleep(0.01)  # it waits its first back-off
    retrying.cancel()

    with pytest.raises(asyncio.CancelledError):
        await retrying
