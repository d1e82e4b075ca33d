"""The security middleware in the order it runs, outermost first, and why in that order.

1. Host check (`browser.py`): a rebound name is refused before anything else looks at the
   request, preflights and `/health` included.
2. CORS (`app.py`, only with CORS_ORIGINS): answers preflights, which carry no token, and adds
   its headers to every answer below it, so a listed page can read a 401 or 403 too.
3. Bearer auth (`auth.py`, only with API_TOKEN): nothing below learns of an unauthorized request.
4. Browser guard (`browser.py`): cross-origin changes (403) and non-JSON bodies (415).

The body limit and trailing-slash handling follow in `app.py`.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.types import Scope

from orchestrator.http.auth import BearerAuth, BearerAuthMiddleware
from orchestrator.http.browser import (
    BrowserGuard,
    BrowserGuardMiddleware,
    HostCheck,
    HostCheckMiddleware,
)
from orchestrator.settings import Settings

#: One check of a request: the answer refusing it, or None to let it through.
Refusal = Callable[[Scope], Response | None]


def host_middleware(settings: Settings) -> list[Middleware]:
    """The Host check (always on)."""
    return [Middleware(HostCheckMiddleware, allowed_hosts=settings.allowed_hosts)]


def request_guards(settings: Settings) -> list[Middleware]:
    """Bearer auth when API_TOKEN is set, then the browser guard (always on)."""
    guards: list[Middleware] = []
    if settings.api_tokens:
        guards.append(Middleware(BearerAuthMiddleware, tokens=settings.api_tokens))
    guards.append(Middleware(BrowserGuardMiddleware, cors_origins=settings.cors_origins))
    return guards


def refusals(settings: Settings) -> list[Refusal]:
    """What the middleware above refuses, as plain checks in the same order and on the same
    settings (the Host check, bearer auth with API_TOKEN, the browser guard): for a path that
    answers before the stack (fast_reads.py). CORS refuses nothing, and such a path is off
    where it is on."""
    checks: list[Refusal] = [HostCheck(settings.allowed_hosts).refusal]
    if settings.api_tokens:
        checks.append(BearerAuth(settings.api_tokens).refusal)
    checks.append(BrowserGuard(settings.cors_origins).refusal)
    return checks
