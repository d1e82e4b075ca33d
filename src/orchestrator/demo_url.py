"""The server URL `orchestrator demo --url` takes: `http://` assumed, anything else explained.

A user types `localhost:8000` as often as `http://localhost:8000`; both work. A URL that still
cannot name an orchestrator is refused with one sentence saying why and what a good one looks
like, instead of a traceback from deep in urllib.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

#: What a good --url looks like, quoted by every complaint about a bad one.
URL_EXAMPLE = "http://127.0.0.1:8000 (or 127.0.0.1:8000, http:// is assumed)"

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# "http:host..." but not "http:8000", which is the host "http" on port 8000.
_SCHEME_WITHOUT_SLASHES = re.compile(r"https?:(?!//)(?!\d+(/|$))", re.IGNORECASE)
_HOST_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")


class BadUrl(ValueError):
    """The server URL given to the demo cannot name an orchestrator."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"bad server URL {url!r}: {reason}; give one like {URL_EXAMPLE}")


def normalize_url(text: str) -> str:
    """The server's root URL for `text`, with http:// added if it has no scheme; or BadUrl."""
    url = text.strip()
    if not url:
        raise BadUrl(text, "it is empty")
    if any(char.isspace() or not char.isprintable() for char in url):
        raise BadUrl(text, "it must not contain spaces or control characters")
    if _SCHEME_WITHOUT_SLASHES.match(url):
        raise BadUrl(text, "the scheme is written http:// or https://, with the two slashes")
    if not _SCHEME.match(url):
        url = "http://" + url
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed "[" of an IPv6 address
        raise BadUrl(text, f"it cannot be parsed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BadUrl(text, f"the scheme must be http or https, not {parts.scheme!r}")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise BadUrl(text, "it must not have a query (?...) or fragment (#...)")
    _check_netloc(text, parts.netloc)
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _check_netloc(text: str, netloc: str) -> None:
    if not netloc:
        raise BadUrl(text, "it names no host")
    if "@" in netloc:
        raise BadUrl(text, "a user name or password in the URL is not supported")
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise BadUrl(text, f"{rest!r} after the IPv6 address is not a port")
        has_port, port = bool(rest), rest[1:]
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            raise BadUrl(text, f"{host!r} is not an IPv6 address") from None
    else:
        if netloc.count(":") > 1:
            raise BadUrl(
                text,
                "a host with ':' in it must be an IPv6 address in brackets, like http://[::1]:8000",
            )
        host, colon, port = netloc.partition(":")
        has_port = bool(colon)
        if not _is_host_name(host):
            raise BadUrl(text, f"{host!r} is not a host name or IP address")
    if has_port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise BadUrl(text, f"the port must be a number from 1 to 65535, not {port!r}")


def _is_host_name(host: str) -> bool:
    if host.isascii():
        return _HOST_NAME.fullmatch(host) is not None
    try:  # an internationalised name, which urllib sends in its IDNA form
        return _is_host_name(host.encode("idna").decode("ascii"))
    except UnicodeError:
        return False


def is_local_server(url: str, api_host: str) -> bool:
    """Whether the server at `url` (normalized) is this machine's loopback or API_HOST itself,
    so the demo may send it a token of API_TOKEN; any other server could be someone else's."""
    host = (urllib.parse.urlsplit(url).hostname or "").lower().removesuffix(".")
    if host == "localhost" or host == api_host.lower().strip("[]"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
