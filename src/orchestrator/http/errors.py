"""Every error the API answers with, as one table from exception to (status, code).

```
domain/errors.py      DomainError
                        WorkflowNotFound     404 not_found
                        TaskNotFound         404 not_found
                        InvalidTransition    409 invalid_transition (state, action, allowed)
                        StepInProgress       409 step_in_progress
eventstore/errors.py  EventStoreError
                        ConcurrencyConflict  409 conflict (stream, expected, actual)
                        StoreUnavailable     503 store_unavailable
engine                InvalidTaskConfig      422 validation_error (config key, reason)
                      TooBusy                429 too_busy (+ Retry-After; too much work queued)
                      ShuttingDown           503 shutting_down (+ Retry-After; a `next` whose
                                             step outlasted the shutdown grace)
http/errors.py        InvalidInput           422 validation_error (field, reason)
                      RequestInProgress      409 conflict (an Idempotency-Key's command runs)
                      VersionNotFound        404 not_found
                      PayloadTooLarge        413 payload_too_large
                      ClientTooSlow          408 request_timeout (+ Connection: close)
starlette             ClientDisconnect       logged at INFO, not an error: nobody is left to answer
msgspec               ValidationError        422 validation_error
                      DecodeError            422 invalid_json
starlette             HTTPException          its status: not_found, method_not_allowed, ...
anything else                                500 internal_error (logged)
```

The security middleware answers before any route runs, with `error_response` directly (see
http/security.py): 400 `bad_host`, 401 `unauthorized` (+ WWW-Authenticate), 403
`forbidden_origin`, 415 `unsupported_media_type`.

Routes raise; they never build error bodies. Every body is `{"error": code, "detail": sentence}`.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from orchestrator.domain.errors import (
    InvalidTransition,
    StepInProgress,
    TaskNotFound,
    WorkflowNotFound,
)
from orchestrator.engine.backlog import TooBusy
from orchestrator.engine.coordinator import ShuttingDown
from orchestrator.engine.task_types import InvalidTaskConfig
from orchestrator.eventstore.errors import ConcurrencyConflict, StoreUnavailable

log = logging.getLogger(__name__)


class InvalidInput(Exception):
    """A request parameter or body field fails validation."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class RequestInProgress(Exception):
    """The command recorded under an Idempotency-Key has no answer yet (its step still runs)."""


class VersionNotFound(Exception):
    """Time travel to a version the stream does not have (yet)."""


class PayloadTooLarge(Exception):
    """The request body is larger than MAX_BODY_BYTES."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"the request body is over the limit of {limit} bytes")


class ClientTooSlow(Exception):
    """The client took longer than CLIENT_TIMEOUT_SECONDS to send its request body."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(
            f"the request body did not arrive within {seconds:g} s (CLIENT_TIMEOUT_SECONDS)"
        )


class ErrorBody(msgspec.Struct):
    """The body of every error response."""

    error: str
    detail: str


_TABLE: dict[type[Exception], tuple[int, str]] = {
    WorkflowNotFound: (404, "not_found"),
    TaskNotFound: (404, "not_found"),
    InvalidTransition: (409, "invalid_transition"),
    StepInProgress: (409, "step_in_progress"),
    ConcurrencyConflict: (409, "conflict"),
    StoreUnavailable: (503, "store_unavailable"),
    InvalidInput: (422, "validation_error"),
    RequestInProgress: (409, "conflict"),
    InvalidTaskConfig: (422, "validation_error"),
    VersionNotFound: (404, "not_found"),
    PayloadTooLarge: (413, "payload_too_large"),
    TooBusy: (429, "too_busy"),
    ShuttingDown: (503, "shutting_down"),
    ClientTooSlow: (408, "request_timeout"),
    msgspec.ValidationError: (422, "validation_error"),
    msgspec.DecodeError: (422, "invalid_json"),
}

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

_encoder = msgspec.json.Encoder()


def error_response(status: int, code: str, detail: str, headers: Any = None) -> Response:
    """A JSON error response."""
    body = _encoder.encode(ErrorBody(error=code, detail=detail))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


#: Seconds a client is told to wait before it tries again after a 503 (the store cannot write).
RETRY_AFTER_SECONDS = 5


async def _handle_known(request: Request, exc: Exception) -> Response:
    for kind in type(exc).__mro__:
        if kind in _TABLE:
            status, code = _TABLE[kind]
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
            if isinstance(exc, TooBusy):
                headers = {"Retry-After": str(exc.retry_after)}
            elif isinstance(exc, ClientTooSlow):  # the rest of its body is not waited for
                headers = {"Connection": "close"}
            return error_response(status, code, _detail(exc), headers=headers)
    return await _handle_unexpected(request, exc)


def _detail(exc: Exception) -> str:
    # ValidationError is a subclass of DecodeError, so it is asked about first.
    if isinstance(exc, msgspec.ValidationError):
        return f"invalid request body: {exc}"
    if isinstance(exc, msgspec.DecodeError):
        return f"the request body is not valid JSON: {exc}"
    return str(exc)


async def _handle_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    detail = exc.detail
    if exc.status_code == 404:
        detail = f"no route matches {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, code, detail, headers=exc.headers)


async def _handle_disconnect(request: Request, exc: Exception) -> Response:
    # An abandoned upload is the client's choice, not a server fault: no traceback, no ERROR.
    # Nothing was recorded (the body never arrived whole), and nobody is left to read this.
    log.info("client left before sending all of %s %s", request.method, request.url.path)
    return error_response(400, "client_disconnected", "the client closed the connection")


async def _handle_unexpected(request: Request, exc: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "the server failed to handle the request")


def status_of(exc: Exception) -> int:
    """The status the app answers `exc` with (500 for an exception it does not know)."""
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, ClientDisconnect):
        return 400
    return next((_TABLE[kind][0] for kind in type(exc).__mro__ if kind in _TABLE), 500)


def exception_handlers() -> dict[Any, Any]:
    """The handlers to register on the Starlette app."""
    handlers: dict[Any, Any] = {kind: _handle_known for kind in _TABLE}
    handlers[HTTPException] = _handle_http
    handlers[ClientDisconnect] = _handle_disconnect
    handlers[Exception] = _handle_unexpected
    return handlers
