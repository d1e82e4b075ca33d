"""The `http_request` task type: one real HTTP request, only to hosts on an allow-list.

The allow-list (HTTP_TASK_ALLOWED_HOSTS) names hosts as they are written in URLs: `host` allows
the scheme's default port (80, 443), `host:port` that port. Names are not resolved: a listed name
reaches whatever address DNS gives it when the request is made (nothing is pinned), and an
address is allowed only if it is listed as written (`127.0.0.1` does not allow `localhost`).

Redirects are never followed blindly: each target is checked against the same list, at most
MAX_REDIRECTS of them. A fresh client per task keeps cookies from one task out of another's
requests; it ignores proxy variables and `.netrc` (`trust_env=False`), so no credential or route
the service's environment holds is added to a request a client wrote.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from orchestrator.engine.task_types import InvalidTaskConfig, TaskWork

#: The task type's name in `POST /tasks`.
HTTP_REQUEST = "http_request"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MAX_REDIRECTS = 5
#: Seconds a request may take when its config names no timeout (capped by the setting).
DEFAULT_TIMEOUT = 10.0
SETTING = "HTTP_TASK_ALLOWED_HOSTS"
#: Headers the client sets itself; `Host` would also let a request dodge the allow-list.
_CLIENT_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: The parsed body is kept only if readers of the stored result could read it (as for configs).
_MAX_JSON_DEPTH = 30
_INT64 = (-(2**63), 2**63 - 1)


class HttpRequestFailed(Exception):
    """The request got no usable answer, or an answer with a status of 400 or more."""


@dataclass(frozen=True)
class HttpTaskPolicy:
    """Which hosts `http_request` tasks may call, and how much they may read and wait."""

    #: Lower-case `host` or `host:port` entries (IPv6 in brackets); empty disables the type.
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)
    max_response_bytes: int = 1024 * 1024
    max_timeout: float = 60.0

    def allows(self, url: httpx.URL) -> bool:
        """Whether the allow-list lists this URL's host and port."""
        host, port = _host(url), _port(url)
        default = port == _DEFAULT_PORTS.get(url.scheme)
        return f"{host}:{port}" in self.allowed_hosts or (default and host in self.allowed_hosts)

    def prepare(self, config: dict[str, Any]) -> TaskWork:
        """The request this config asks for, checked; InvalidTaskConfig if it may not be made."""
        if not self.allowed_hosts:
            raise InvalidTaskConfig(
                f"task_type {HTTP_REQUEST} is disabled until {SETTING} lists the hosts it may call"
            )
        url = _url(config.get("url"))
        if not self.allows(url):
            raise InvalidTaskConfig(f"config url: host {host_name(url)} is not in {SETTING}")
        method = _method(config.get("method", "GET"))
        headers = _headers(config.get("headers", {}))
        content = _content(config, headers)
        timeout = _timeout(config.get("timeout", min(DEFAULT_TIMEOUT, self.max_timeout)), self)
        request = _Request(method, url, headers, content, timeout)
        return lambda: _perform(request, self)


def host_name(url: httpx.URL) -> str:
    """The URL's host as an allow-list entry names it: `host`, or `host:port` off the default."""
    host, port = _host(url), _port(url)
    return host if port == _DEFAULT_PORTS.get(url.scheme) else f"{host}:{port}"


def _host(url: httpx.URL) -> str:
    # raw_host is the name as sent to DNS (IDNA-encoded), IPv6 without its brackets.
    host = url.raw_host.decode("ascii").lower()
    return f"[{host}]" if ":" in host else host


def _port(url: httpx.URL) -> int | None:
    return url.port if url.port is not None else _DEFAULT_PORTS.get(url.scheme)


@dataclass(frozen=True)
class _Request:
    method: str
    url: httpx.URL
    headers: dict[str, str]
    content: bytes | None
    timeout: float


def _url(value: object) -> httpx.URL:
    if value is None:
        raise InvalidTaskConfig("config url is required")
    if not isinstance(value, str):
        raise InvalidTaskConfig(f"config url must be a string, got {value!r}")
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise InvalidTaskConfig(f"config url is not a valid URL ({exc}): {value[:200]!r}") from None
    if url.scheme not in _DEFAULT_PORTS or not url.host:
        raise InvalidTaskConfig(
            f"config url must be an http:// or https:// URL, got {value[:200]!r}"
        )
    if url.userinfo:
        raise InvalidTaskConfig(
            "config url must not carry user:password@ credentials; send them in config headers"
        )
    return url


def _method(value: object) -> str:
    if not isinstance(value, str) or value.upper() not in METHODS:
        raise InvalidTaskConfig(f"config method must be one of {', '.join(METHODS)}, got {value!r}")
    return value.upper()


def _headers(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        raise InvalidTaskConfig(f"config headers must be an object of strings, got {value!r}")
    for key, item in value.items():
        if not key.isascii() or not key.isprintable() or not key or ":" in key or " " in key:
            raise InvalidTaskConfig(f"config headers: {key!r} is not a header name")
        if "\r" in item or "\n" in item or not item.isascii():
            raise InvalidTaskConfig(f"config headers: the value of {key} must be one ASCII line")
        if key.lower() in _CLIENT_HEADERS:
            raise InvalidTaskConfig(f"config headers: {key} is set by the client, not by config")
    return dict(value)


def _content(config: dict[str, Any], headers: dict[str, str]) -> bytes | None:
    if "json" in config and "body" in config:
        raise InvalidTaskConfig("config may have json or body, not both")
    has_type = any(key.lower() == "content-type" for key in headers)
    if "json" in config:
        if not has_type:
            headers["Content-Type"] = "application/json"
        return msgspec.json.encode(config["json"])
    if "body" in config:
        body = config["body"]
        if not isinstance(body, str):
            raise InvalidTaskConfig(f"config body must be a string, got {body!r}")
        if not has_type:
            headers["Content-Type"] = "text/plain; charset=utf-8"
        return body.encode("utf-8")
    return None


def _timeout(value: object, policy: HttpTaskPolicy) -> float:
    limit = policy.max_timeout
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= limit:
        raise InvalidTaskConfig(
            f"config timeout must be a number of seconds above 0 and at most {limit:g}, "
            f"got {value!r}"
        )
    return float(value)


def _perform(request: _Request, policy: HttpTaskPolicy) -> dict[str, Any]:
    """Make the request, following allowed redirects; the result, or HttpRequestFailed."""
    started = time.monotonic()
    deadline = started + request.timeout
    where = f"{request.method} {request.url}"
    headers = dict(request.headers)
    if not any(key.lower() == "accept-encoding" for key in headers):
        headers["Accept-Encoding"] = "identity"  # the size limit then counts the bytes sent
    with httpx.Client(follow_redirects=False, trust_env=False) as client:
        outgoing = client.build_request(
            request.method, request.url, headers=headers, content=request.content
        )
        for redirects in range(MAX_REDIRECTS + 1):
            # The timeout covers the whole task, redirects and body included.
            remaining = max(deadline - time.monotonic(), 0.001)
            outgoing.extensions = {
                **outgoing.extensions,
                "timeout": httpx.Timeout(remaining).as_dict(),
            }
            try:
                response = client.send(outgoing, stream=True)
                try:
                    following = response.next_request
                    if following is None:
                        return _result(where, response, policy, started, deadline, redirects)
                finally:
                    response.close()
            except httpx.TimeoutException:
                raise _timed_out(where, outgoing.url, request.timeout) from None
            except httpx.ConnectError as exc:
                raise HttpRequestFailed(
                    f"{where}: could not connect to {host_name(outgoing.url)}: {exc}"
                ) from None
            except httpx.HTTPError as exc:
                raise HttpRequestFailed(
                    f"{where}: the request to {host_name(outgoing.url)} failed: {exc}"
                ) from None
            _check_redirect(where, following, policy)
            outgoing = following
    raise HttpRequestFailed(f"{where}: more than {MAX_REDIRECTS} redirects")


def _check_redirect(where: str, target: httpx.Request, policy: HttpTaskPolicy) -> None:
    url = target.url
    if url.scheme not in _DEFAULT_PORTS:
        raise HttpRequestFailed(f"{where}: redirected to {url}, which is not http or https")
    if url.userinfo:
        raise HttpRequestFailed(f"{where}: redirected to a URL with user:password@ credentials")
    if not policy.allows(url):
        raise HttpRequestFailed(
            f"{where}: redirected to {url}; host {host_name(url)} is not in {SETTING}"
        )


def _timed_out(where: str, url: httpx.URL, timeout: float) -> HttpRequestFailed:
    return HttpRequestFailed(f"{where}: no answer from {host_name(url)} within {timeout:g} s")


def _result(
    where: str,
    response: httpx.Response,
    policy: HttpTaskPolicy,
    started: float,
    deadline: float,
    redirects: int,
) -> dict[str, Any]:
    if response.status_code >= 400:
        reason = f"{response.status_code} {response.reason_phrase}".strip()
        raise HttpRequestFailed(f"{where} answered {reason}")
    # Read at most the limit: stop at the first chunk that reaches it, keep only what fits.
    limit = policy.max_response_bytes
    chunks: list[bytes] = []
    size = 0
    truncated = False
    for chunk in response.iter_bytes():
        if size + len(chunk) > limit:
            chunks.append(chunk[: limit - size])
            truncated = True
            break
        chunks.append(chunk)
        size += len(chunk)
        if time.monotonic() > deadline:  # a server dripping bytes must not outlast the timeout
            raise _timed_out(where, response.url, deadline - started)
    raw = b"".join(chunks)
    result: dict[str, Any] = {
        "status": "requested",
        "method": response.request.method,
        "url": str(response.url),
        "status_code": response.status_code,
        "headers": dict(response.headers.items()),
        "body": raw.decode("utf-8", errors="replace"),
        "truncated": truncated,
        "redirects": redirects,
        "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
    }
    if not truncated and _is_json(response.headers.get("content-type", "")):
        try:
            value = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            pass
        else:
            if _storable(value, 1):
                result["json"] = value
    return result


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _storable(value: Any, depth: int) -> bool:
    if depth > _MAX_JSON_DEPTH:
        return False
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return _INT64[0] <= value <= _INT64[1]
    if isinstance(value, dict):
        return all(_storable(item, depth + 1) for item in value.values())
    if isinstance(value, list):
        return all(_storable(item, depth + 1) for item in value)
    return True
