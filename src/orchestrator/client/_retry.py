"""When to send a request again and how long to wait first: bounded attempts, exponential
back-off with jitter, and the server's Retry-After honoured. No I/O here: the blocking and the
async client each sleep for the delays this decides.

A request is sent again after a connection error (refused, dropped, timed out) and after a 429
or 503. That is safe for commands too: a command's retries carry its first Idempotency-Key, so
the server answers a repeat of a command it already ran with that first answer.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from orchestrator.client.errors import ConnectionFailed

if TYPE_CHECKING:
    from orchestrator.client._calls import Call

#: Statuses worth sending again after a pause: the server was busy or could not write.
RETRY_STATUSES = frozenset({429, 503})

#: Transport errors after which the same request may simply be sent again. Others (a URL
#: httpx cannot use, a proxy misconfigured) fail the same way every time.
RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times, and how patiently, a request is sent again."""

    #: Attempts after the first; 0 sends every request once.
    max_retries: int = 3
    #: The first pause, in seconds; each further one doubles, up to `max_backoff`.
    backoff: float = 0.1
    max_backoff: float = 5.0
    #: A Retry-After longer than this is not waited for: the error is raised with it instead.
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {self.max_retries}")
        if not (0 <= self.backoff <= self.max_backoff):
            raise ValueError(
                f"need 0 <= backoff <= max_backoff, got {self.backoff} and {self.max_backoff}"
            )

    def pause(self, failures: int, retry_after: float | None = None) -> float:
        """The pause before the next attempt after `failures` failures in a row (from 1): half
        the back-off plus a random share of the other half, and never less than Retry-After."""
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** (failures - 1))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        return delay if retry_after is None else max(delay, retry_after)


#: What a client uses unless told otherwise: 3 retries, pauses from 0.1 s up to 5 s.
DEFAULT_RETRY = RetryPolicy()


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds from now (delta-seconds or an HTTP date); None if absent or not
    readable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def retry_after(response: httpx.Response) -> float | None:
    """The response's Retry-After in seconds, if it has a readable one."""
    return parse_retry_after(response.headers.get("Retry-After"))


class Attempts:
    """The attempts of one call: after each, says whether to try again and after what pause."""

    def __init__(self, policy: RetryPolicy, call: Call[Any]) -> None:
        self._policy = policy
        self._call = call
        self.failures = 0

    def after_response(self, response: httpx.Response) -> float | None:
        """The pause before sending again, or None when `response` is the final answer."""
        if response.status_code not in self._call.retry_statuses:
            return None
        wanted = retry_after(response)
        if self.failures >= self._policy.max_retries or (
            wanted is not None and wanted > self._policy.max_retry_after
        ):
            return None
        self.failures += 1
        return self._policy.pause(self.failures, wanted)

    def after_error(self, error: httpx.TransportError) -> float:
        """The pause before sending again after a transport error; ConnectionFailed when the
        error is not one to retry or no attempt is left."""
        if not isinstance(error, RETRYABLE_ERRORS) or self.failures >= self._policy.max_retries:
            raise ConnectionFailed(
                self._call.method,
                str(error.request.url) if _has_request(error) else self._call.path,
                self.failures + 1,
                describe(error),
                idempotency_key=self._call.idempotency_key,
            ) from error
        self.failures += 1
        return self._policy.pause(self.failures)


def _has_request(error: httpx.TransportError) -> bool:
    try:
        error.request  # noqa: B018 -- httpx raises RuntimeError when no request is attached
    except RuntimeError:
        return False
    return True


def describe(error: BaseException) -> str:
    """An exception as one line: its type and message (httpx messages may be empty)."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
