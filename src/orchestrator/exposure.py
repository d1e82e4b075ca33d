"""Whether `orchestrator serve` may listen where it is told, and what it may print about it.

Without API_TOKEN anyone who can connect may start, cancel and delete workflows. On a loopback
address that is only this machine's users (and its browsers' pages, which http/browser.py
guards against); on any other address it is the network. So serving a non-loopback address
without a token is refused before the port is bound, unless ALLOW_INSECURE_REMOTE=true says the
network in front of it is trusted (a private container network, say).
"""

from __future__ import annotations

import ipaddress
import socket

from orchestrator.settings import Settings

_LOCALHOST_NAMES = frozenset({"localhost", "localhost."})


def is_loopback(host: str) -> bool:
    """Whether every address `host` stands for is a loopback one (127.0.0.0/8, ::1).

    A literal address is judged as written; `localhost` by its name; any other name by what it
    resolves to now. A name that does not resolve is not loopback (the check fails closed).
    """
    literal = host.strip().removeprefix("[").removesuffix("]")
    if literal.lower() in _LOCALHOST_NAMES:
        return True
    try:
        return _is_loopback_address(literal)
    except ValueError:
        pass
    if not literal:
        return False  # "" listens on every address
    try:
        infos = socket.getaddrinfo(literal, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(_is_loopback_address(str(info[4][0])) for info in infos)


def _is_loopback_address(text: str) -> bool:
    address = ipaddress.ip_address(text.partition("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def exposure_refusal(settings: Settings) -> str | None:
    """The one line `serve` stops with, or None if it may listen on `settings.api_host`."""
    if settings.api_tokens or settings.allow_insecure_remote or is_loopback(settings.api_host):
        return None
    return (
        f"refusing to serve {settings.api_host} without API_TOKEN: it is not a loopback "
        "address, so anyone who can reach it could run, cancel and delete workflows; set "
        "API_TOKEN (clients then send 'Authorization: Bearer <token>'), or "
        "ALLOW_INSECURE_REMOTE=true if the network in front of it is trusted"
    )


def exposure_warning(settings: Settings) -> str | None:
    """A warning to log when ALLOW_INSECURE_REMOTE is what lets the server start."""
    if settings.api_tokens or not settings.allow_insecure_remote:
        return None
    if is_loopback(settings.api_host):
        return None
    return (
        f"serving {settings.api_host} without API_TOKEN (ALLOW_INSECURE_REMOTE=true): "
        "anyone who can reach it can run, cancel and delete workflows"
    )
