"""Idempotency-Key on every command: a retried command is answered, never carried out twice.

A command sent with a key claims it in the transaction that appends the command's events (see
engine/claims.py and eventstore/keys.py): no crash can leave the command recorded without its
key. Once the answer is given it is stored beside the key. A repeat of the request (same method,
path and body) within IDEMPOTENCY_TTL_SECONDS gets that answer again, with `Idempotent-Replayed:
true`, and appends nothing; if the answer was never stored (the server died between the commit
and the answer), it is rebuilt from the log at the version the command left (replies.py). The
same key on a different request is 422. Concurrent requests with one key: the first runs, the
others wait for it in this process (one server per database file) and get its answer (unless
it is a 5xx, which is no answer: then they run it, or rebuild its answer, themselves).

With API_TOKEN, keys are kept per token: the key stored is the token's fingerprint (auth.py),
a colon and the key sent, so a client never gets the answer to another token's request.

A command that was refused (any 4xx before it appended anything) leaves no key behind: it
changed nothing, so a retry is decided afresh. Expired keys are purged as keyed requests come,
at most once a minute, so the table holds about a TTL's worth of keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from orchestrator.engine.claims import claiming
from orchestrator.eventstore.errors import EventStoreError
from orchestrator.eventstore.keys import IdempotencyClaim, IdempotencyRecord
from orchestrator.http.auth import principal_of
from orchestrator.http.dispatch import Endpoint
from orchestrator.http.errors import (
    InvalidInput,
    RequestInProgress,
    exception_handlers,
    status_of,
)
from orchestrator.http.idempotency_key import (
    COMMAND_METHODS,
    HEADER,
    REPLAYED_HEADER,
    checked_key,
    request_hash,
)
from orchestrator.http.replies import rebuild
from orchestrator.runtime import Runtime

log = logging.getLogger(__name__)

#: How long a repeat waits for the read models to include the command before it answers anyway.
_SETTLE_SECONDS = 3.0
#: Seconds between purges of expired keys (less when the TTL is shorter).
_PURGE_INTERVAL = 60.0


class _Answer:
    """An answer to hand to repeats: a status and body, or the error the handler raised."""

    __slots__ = ("body", "error", "status")

    def __init__(self, status: int = 0, body: bytes = b"", error: Exception | None = None):
        self.status, self.body, self.error = status, body, error

    @property
    def final(self) -> bool:
        """Whether it may be handed to those waiting: not a 5xx, which answers nothing."""
        status = status_of(self.error) if self.error is not None else self.status
        return status < 500

    def response(self) -> Response:
        """A fresh response for a repeat (or raise the handler's error again)."""
        if self.error is not None:
            raise self.error
        return replayed(self.status, self.body)


class _InFlight:
    """The request running under a key now, and the answer it leaves for those waiting."""

    __slots__ = ("answer", "done", "request_hash", "waiting")

    def __init__(self, request_hash: bytes) -> None:
        self.request_hash = request_hash
        self.done = asyncio.Event()
        self.answer: _Answer | None = None
        self.waiting = 0


def stored_key(principal: str, key: str) -> str:
    """The key as stored: `key` itself without auth, else "<token fingerprint>:<key>"."""
    return f"{principal}:{key}" if principal else key


def replayed(status: int, body: bytes) -> Response:
    """A stored answer sent again."""
    media_type = "application/json" if body else None
    return Response(body, status, headers={REPLAYED_HEADER: "true"}, media_type=media_type)


class IdempotentCommands:
    """The dispatcher's guard around command handlers (see dispatch.build_routes)."""

    def __init__(self, runtime: Runtime, *, clock: Callable[[], float] = time.time) -> None:
        self._runtime = runtime
        #: Unix time now; tests replace it to expire keys without waiting.
        self.clock = clock
        self._in_flight: dict[str, _InFlight] = {}
        self._last_purge = float("-inf")

    @property
    def ttl(self) -> float:
        """Seconds a key is remembered."""
        return self._runtime.settings.idempotency_ttl_seconds

    def waiting_on(self, key: str) -> int:
        """How many requests wait for the one running under `key` (0 if none runs)."""
        flight = self._in_flight.get(key)
        return flight.waiting if flight is not None else 0

    async def __call__(
        self, request: Request, endpoint: Endpoint, call: Callable[[], Awaitable[Response]]
    ) -> Response:
        """Run `call` (the handler) at most once per key; answer repeats from the record."""
        if endpoint.method not in COMMAND_METHODS:  # reads pay nothing
            return await call()
        values = request.headers.getlist(HEADER)
        if not values:
            return await call()
        sent = checked_key(values)
        key = stored_key(principal_of(request.scope), sent)
        bound = request_hash(request.method, request.url.path, await request.body())
        while (flight := self._in_flight.get(key)) is not None:
            flight.waiting += 1
            try:
                await flight.done.wait()
            finally:
                flight.waiting -= 1
            answer = flight.answer
            if flight.request_hash == bound and answer is not None and answer.final:
                return answer.response()
        flight = _InFlight(bound)
        self._in_flight[key] = flight  # no await since the check above: one runner per key
        try:
            return await self._answer(request, endpoint, call, key, sent, flight)
        finally:
            flight.done.set()
            if self._in_flight.get(key) is flight:
                del self._in_flight[key]

    async def _answer(
        self,
        request: Request,
        endpoint: Endpoint,
        call: Callable[[], Awaitable[Response]],
        key: str,
        sent: str,
        flight: _InFlight,
    ) -> Response:
        now = self.clock()
        await self._purge_if_due(now)
        record = await self._runtime.store.read_idempotency(key)
        if record is not None and record.created_at + self.ttl > now:
            if record.request_hash != flight.request_hash:
                raise InvalidInput(
                    f"{HEADER} {sent[:40]!r} was already used for a different request (method, "
                    "path or body); send a new key for a new request"
                )
            flight.answer = await self._repeat(request, endpoint, record)
            return flight.answer.response()
        claim = IdempotencyClaim(key=key, request_hash=flight.request_hash, created_at=now)
        with claiming(claim) as pending:
            try:
                response = await call()
            except Exception as exc:
                flight.answer = _Answer(error=exc)
                if pending.recorded is not None:  # refused after it appended (a `next`)
                    await self._save(request, pending.recorded, exc)
                raise
        body = getattr(response, "body", None)
        if isinstance(body, bytes):
            flight.answer = _Answer(response.status_code, body)
            if pending.recorded is not None and response.status_code < 500:
                await self._store_answer(pending.recorded, response.status_code, body)
        return response

    async def _repeat(
        self, request: Request, endpoint: Endpoint, record: IdempotencyRecord
    ) -> _Answer:
        with contextlib.suppress(TimeoutError):  # read-your-writes, as the first answer had
            await self._runtime.projector.wait_for(record.position, _SETTLE_SECONDS)
        if record.status is not None:
            return _Answer(record.status, record.body or b"")
        wait = self._runtime.settings.task_timeout + 10.0  # a resumed step ends by then
        try:
            response = await rebuild(
                self._runtime, endpoint.method, endpoint.path, record, wait=wait
            )
        except RequestInProgress:
            raise
        except Exception as exc:
            await self._save(request, record, exc)
            return _Answer(error=exc)
        body = bytes(response.body)
        await self._store_answer(record, response.status_code, body)
        return _Answer(response.status_code, body)

    async def _save(self, request: Request, record: IdempotencyRecord, exc: Exception) -> None:
        """Store the error answer the app gives for `exc`, when it is a refusal (4xx)."""
        handlers = exception_handlers()
        # Up to, not including, Exception: the catch-all logs, and its 500 is not an answer.
        kind = next((k for k in type(exc).__mro__ if k in handlers), Exception)
        if kind is Exception:
            return
        response: Response = await handlers[kind](request, exc)
        if response.status_code < 500:
            await self._store_answer(record, response.status_code, bytes(response.body))

    async def _store_answer(self, record: IdempotencyRecord, status: int, body: bytes) -> None:
        try:
            await self._runtime.store.save_idempotent_answer(
                record.key, record.request_hash, status, body
            )
        except EventStoreError as exc:  # the answer can still be rebuilt from the log
            log.warning("could not store the answer for %s %r: %s", HEADER, record.key, exc)

    async def _purge_if_due(self, now: float) -> None:
        if now - self._last_purge < min(_PURGE_INTERVAL, self.ttl):
            return
        self._last_purge = now
        try:
            purged = await self._runtime.store.purge_idempotency(now - self.ttl)
        except EventStoreError as exc:
            log.warning("could not purge expired idempotency keys: %s", exc)
            return
        if purged:
            log.info("purged %d expired idempotency key(s)", purged)
