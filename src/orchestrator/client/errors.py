"""What the client raises: one base class, the API's errors by status, and the client's own.

```
ClientError                      everything below
  ApiError                       the server answered with an error: status, code, detail
    BadRequest          400      bad_host, client_disconnected, ...
    Unauthorized        401      unauthorized (no token, or a wrong one)
    Forbidden           403      forbidden_origin
    NotFound            404      not_found (an unknown or deleted workflow or task)
    Conflict            409      invalid_transition, step_in_progress, conflict
    ValidationFailed    422      validation_error, invalid_json
    Overloaded          429 503  too_busy, store_unavailable, too_many_connections, ...
                                 (retry_after: the seconds the server asked for)
    ServerError         5xx      internal_error (any other 5xx)
  ConnectionFailed               no answer arrived, after every attempt
  UnexpectedResponse             an answer that is not the documented shape
  WaitTimeout                    wait() ran out of time (also a TimeoutError)
```

`code` is the JSON body's `error` field and `detail` its sentence, exactly as the server sent
them (see the server's http/errors.py). An error raised for a command carries the
Idempotency-Key it was sent with, so the caller can repeat it later without a duplicate.
"""

from __future__ import annotations

from collections.abc import Collection

import msgspec


class ClientError(Exception):
    """Everything the orchestrator client raises."""


class ApiError(ClientError):
    """The server answered with an error status and its `{"error": code, "detail": ...}` body."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        method: str = "",
        path: str = "",
        retry_after: float | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.method = method
        self.path = path
        self.retry_after = retry_after
        self.idempotency_key = idempotency_key
        where = f" ({method} {path})" if method else ""
        super().__init__(f"{status} {code}: {detail}{where}")


class BadRequest(ApiError):
    """400: the request could not be taken as it was sent (e.g. `bad_host`)."""


class Unauthorized(ApiError):
    """401: the server has API_TOKEN set and the request had no token or a wrong one."""


class Forbidden(ApiError):
    """403: refused whatever the token (e.g. `forbidden_origin`)."""


class NotFound(ApiError):
    """404: no such workflow, task, version or route."""


class Conflict(ApiError):
    """409: the current state does not allow the command; the detail names what is allowed."""


class ValidationFailed(ApiError):
    """422: a body field, query parameter or header failed validation; the detail names it."""


class Overloaded(ApiError):
    """429 or 503: the server cannot take the request now; try again after `retry_after`."""


class ServerError(ApiError):
    """A 5xx other than 503: the server failed to handle the request."""


class ConnectionFailed(ClientError):
    """No answer arrived (refused, dropped or timed out), after `attempts` tries."""

    def __init__(
        self,
        method: str,
        url: str,
        attempts: int,
        reason: str,
        *,
        idempotency_key: str | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.attempts = attempts
        self.reason = reason
        self.idempotency_key = idempotency_key
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        super().__init__(f"{method} {url}: no answer after {tries}: {reason}")


class UnexpectedResponse(ClientError):
    """A success answer whose body is not the shape the API documents for that route."""

    def __init__(self, method: str, path: str, status: int, reason: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.reason = reason
        super().__init__(f"{method} {path} answered {status} with an unexpected body: {reason}")


class WaitTimeout(ClientError, TimeoutError):
    """The workflow did not reach one of the awaited states within the timeout."""

    def __init__(
        self, workflow_id: int, states: Collection[str], timeout: float, last_status: str
    ) -> None:
        self.workflow_id = workflow_id
        self.states = frozenset(states)
        self.timeout = timeout
        self.last_status = last_status
        wanted = ", ".join(sorted(self.states))
        super().__init__(
            f"workflow {workflow_id} did not reach {wanted} within {timeout:g} s;"
            f" it is {last_status}"
        )


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: ValidationFailed,
    429: Overloaded,
    503: Overloaded,
}


class _ErrorBody(msgspec.Struct):
    error: str
    detail: str


_error_body = msgspec.json.Decoder(_ErrorBody)


def api_error(
    status: int,
    body: bytes,
    *,
    method: str,
    path: str,
    retry_after: float | None,
    idempotency_key: str | None,
) -> ApiError:
    """The exception for an error answer; a body that is not the API's shape (a proxy's page)
    is kept, shortened, as the detail, with the code `http_<status>`."""
    try:
        parsed = _error_body.decode(body)
    except msgspec.DecodeError:
        code = f"http_{status}"
        detail = body[:200].decode("utf-8", "replace").strip() or "(no body)"
    else:
        code, detail = parsed.error, parsed.detail
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return kind(
        status,
        code,
        detail,
        method=method,
        path=path,
        retry_after=retry_after,
        idempotency_key=idempotency_key,
    )
