"""What keeps a web page in a browser on this machine from driving the API.

Without API_TOKEN, anything that can reach the port may use the API; on the default loopback
address that is the local users, and also every web page their browsers open. Two attacks, two
checks:

- **DNS rebinding**: a page at `http://evil.example:8000` re-resolves its own name to 127.0.0.1
  and then reads this server as its own origin. Its requests carry `Host: evil.example:8000`, so
  the Host header must name an ALLOWED_HOSTS entry (an entry with a port matches only that port;
  without one, any port, as behind a port forward or proxy) or be an IP address literal: a page
  can only be served from an IP origin by the server at that address, so a literal cannot be a
  rebound name. Anything else is 400 `bad_host`.
- **Cross-site requests**: a page may send a "simple" request (POST with a form's or `text/plain`
  type, or with no body at all) to any origin without a CORS preflight; it cannot read the answer,
  but the command has run. So a request that may change something (any method but GET, HEAD and
  OPTIONS) from a page of another origin is 403 `forbidden_origin`, unless CORS_ORIGINS lists
  that origin. Every browser sends `Origin` (possibly `null`) with such requests, and current
  ones `Sec-Fetch-Site` too; curl and other programs send neither, so `curl -X POST .../next`
  keeps working. Another port of the same host is another origin, so it is refused too.

Beside those, a body must be JSON: a request whose `Content-Type` is not JSON (`application/json`,
or any `+json` type, with parameters) is 415 `unsupported_media_type` when it has a body or
changes something. That alone stops HTML forms, whose three types are never JSON. A body with no
`Content-Type` at all is read as JSON, as the original FastAPI service did (and so do clients
such as `requests.post(url, data=...)`): no browser sends one without an `Origin`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.responses import Response
from starlette.types import Scope

from orchestrator.http.errors import error_response

#: Methods that change nothing; any other (POST, PUT, PATCH, DELETE, ...) from another origin's
#: page is refused.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: `Sec-Fetch-Site` values of requests that did not come from another origin's page.
_OWN_FETCH_SITES = frozenset({b"same-origin", b"none"})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def split_host(host: str) -> tuple[str, int | None] | None:
    """`name` or `name:port` (IPv6 in brackets) as (lower-case name, port), or None if malformed
    (a `%`, as of an IPv6 zone id, included)."""
    host = host.strip().lower()
    if "%" in host:  # an IPv6 zone id (`[fe80::1%evil.com]`) would pass as an IP literal
        return None
    name, port = host, None
    if host.startswith("["):
        closing = host.find("]")
        if closing < 0:
            return None
        name, rest = host[: closing + 1], host[closing + 1 :]
        if rest and not rest.startswith(":"):
            return None
        digits = rest[1:] if rest else None
    else:
        name, sep, digits_text = host.partition(":")
        digits = digits_text if sep else None
    if digits is not None:
        if not digits.isdigit() or not digits.isascii() or not 0 < int(digits) < 65536:
            return None
        port = int(digits)
    name = name.removesuffix(".")  # `localhost.` is `localhost`
    if not name:
        return None
    return name, port


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


class AllowedHosts:
    """ALLOWED_HOSTS entries (`name` or `name:port`), plus every IP address literal."""

    def __init__(self, entries: Sequence[str]) -> None:
        self._any_port: set[str] = set()
        self._with_port: set[tuple[str, int]] = set()
        for entry in entries:
            parsed = split_host(entry)
            if parsed is None:
                continue  # the settings parser lets no malformed entry through
            name, port = parsed
            if port is None:
                self._any_port.add(name)
            else:
                self._with_port.add((name, port))

    def allows(self, host: str) -> bool:
        """Whether a request's Host header value names this server."""
        parsed = split_host(host)
        if parsed is None:
            return False
        name, port = parsed
        return (
            name in self._any_port
            or (port is not None and (name, port) in self._with_port)
            or _is_ip_literal(name)
        )


#: Most allowed Host values a HostCheck remembers.
_REMEMBERED = 64


class HostCheck:
    """The Host check as a plain function of a request's scope (its layer in the stack and the
    fast read path of fast_reads.py both call it, see security.py)."""

    def __init__(self, allowed_hosts: Sequence[str]) -> None:
        self.allowed = AllowedHosts(allowed_hosts)
        #: Host values seen to be allowed. Clients send a handful of them, so remembering the
        #: answer spares every request the parsing; refused values are not kept, and the set is
        #: emptied past _REMEMBERED so junk Host headers cannot grow it.
        self._known: set[bytes] = set()

    def refusal(self, scope: Scope) -> Response | None:
        """The 400 `bad_host` answer if the request's Host header is not an allowed host."""
        raw = _header(scope, b"host")
        if raw is not None and raw in self._known:
            return None
        host = raw.decode("latin-1") if raw is not None else ""
        if self.allowed.allows(host):
            if raw is not None:
                if len(self._known) >= _REMEMBERED:
                    self._known.clear()
                self._known.add(raw)
            return None
        shown = repr(host[:100]) if raw is not None else "missing"
        detail = (
            f"the Host header ({shown}) is not a name of this server; if clients reach it "
            "under that name, add the name to ALLOWED_HOSTS"
        )
        return error_response(400, "bad_host", detail)


def is_json_media_type(content_type: bytes) -> bool:
    """`application/json` or `type/anything+json`, with or without parameters."""
    media_type = content_type.split(b";", 1)[0].strip().lower()
    kind, slash, subtype = media_type.partition(b"/")
    if not slash or not kind or not subtype:
        return False
    return media_type == b"application/json" or subtype.endswith(b"+json")


def _has_body(scope: Scope) -> bool:
    length = _header(scope, b"content-length")
    if length is not None:
        try:
            return int(length) > 0
        except ValueError:
            return True  # malformed: the server refuses it before it gets here anyway
    return _header(scope, b"transfer-encoding") is not None


class BrowserGuard:
    """The browser guard as a plain function of a request's scope (its layer in the stack and
    the fast read path of fast_reads.py both call it, see security.py)."""

    def __init__(self, cors_origins: Sequence[str]) -> None:
        self.cors_origins = frozenset(origin.lower().encode() for origin in cors_origins)
        self.any_origin = "*" in cors_origins

    def refusal(self, scope: Scope) -> Response | None:
        """The 403 answer to a cross-origin change, the 415 answer to a non-JSON body, or None."""
        mutating = scope["method"] not in SAFE_METHODS
        if mutating:
            refusal = self._cross_origin_refusal(scope)
            if refusal is not None:
                return error_response(403, "forbidden_origin", refusal)
        content_type = _header(scope, b"content-type")
        if (
            content_type is not None
            and (mutating or _has_body(scope))
            and not is_json_media_type(content_type)
        ):
            shown = content_type.decode("latin-1")[:100]
            detail = (
                f"the request body must be JSON: send 'Content-Type: application/json', "
                f"not {shown!r}"
            )
            return error_response(415, "unsupported_media_type", detail)
        return None

    def _cross_origin_refusal(self, scope: Scope) -> str | None:
        origin = _header(scope, b"origin")
        fetch_site = _header(scope, b"sec-fetch-site")
        if origin is not None and self._is_listed(origin):
            return None
        if origin is not None and not _is_own_origin(origin, _header(scope, b"host")):
            shown = origin.decode("latin-1")[:100]
            return (
                f"a page at {shown!r} may not change anything here (list its origin in "
                "CORS_ORIGINS to allow it)"
            )
        if fetch_site is not None and fetch_site.strip().lower() not in _OWN_FETCH_SITES:
            shown = fetch_site.decode("latin-1")[:40]
            return (
                f"a page of another origin (Sec-Fetch-Site: {shown}) may not change anything "
                "here (list its origin in CORS_ORIGINS to allow it)"
            )
        return None

    def _is_listed(self, origin: bytes) -> bool:
        return self.any_origin or origin.strip().lower().rstrip(b"/") in self.cors_origins


def _is_own_origin(origin: bytes, host: bytes | None) -> bool:
    # The page's origin names the server it came from; it is ours if it names the server this
    # request was sent to (the Host header, already checked against ALLOWED_HOSTS). The scheme
    # is not compared: behind a TLS proxy the page is https and this server sees plain http.
    scheme, sep, authority = origin.strip().lower().partition(b"://")
    if not sep or scheme not in (b"http", b"https") or host is None:
        return False  # `null` (sandboxed frames, file: pages, no-referrer) is no one's origin
    return _without_default_port(authority, scheme) == _without_default_port(
        host.strip().lower(), scheme
    )


def _without_default_port(authority: bytes, scheme: bytes) -> bytes:
    default = b":443" if scheme == b"https" else b":80"
    return authority.removesuffix(default).removesuffix(b".")
