"""The one retry policy of the drivers: while the event store fails, try again with back-off.

An outcome must not be lost to a passing failure (a busy or full disk), and a driver that gave up
reading would leave a started step or run that nobody drives until a restart. So every record and
every fresh load of a driver retries store errors, doubling the delay up to a cap, until it
succeeds, is refused (any other exception, passed on at once), or its driver is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from orchestrator.domain.errors import DomainError
from orchestrator.eventstore.errors import EventStoreError, LeaseLost

T = TypeVar("T")

#: Back-off between attempts while the store fails, in seconds: the first delay and the cap.
FIRST_RETRY, LAST_RETRY = 0.1, 5.0


async def retry_store_errors(
    action: Callable[[], Awaitable[T]],
    *,
    what: str,
    log: logging.Logger,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """`action()`'s result, calling it again after each EventStoreError.

    `what` says what failed in the warning logged for each retry (e.g. "workflow 3: could not
    record FinishStep"). Each attempt calls `action` afresh, so a command is decided again
    against the log as it is then. `sleep` waits between attempts (tests pass a fake).
    """
    delay = FIRST_RETRY
    while True:
        try:
            return await action()
        except LeaseLost:
            raise  # another process owns the aggregate now: trying again cannot succeed
        except EventStoreError as exc:
            log.warning("%s (%s); retrying in %.1fs", what, exc, delay)
            await sleep(delay)
            delay = min(delay * 2, LAST_RETRY)


async def record_or_discard(
    action: Callable[[], Awaitable[T]], *, what: str, discarded: str, log: logging.Logger
) -> T | None:
    """`action()`'s result, retried like `retry_store_errors`; None if the domain refuses it.

    A driver's outcome that the aggregate refuses (it was cancelled or moved on meanwhile) is
    late, not wrong: it is logged as `discarded` and dropped.
    """
    try:
        return await retry_store_errors(action, what=what, log=log)
    except DomainError as exc:
        log.info("%s: %s", discarded, exc)
        return None
