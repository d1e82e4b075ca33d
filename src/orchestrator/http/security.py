"""The security checks in the order they run, outermost first, and why in that order.

1. Host check (`browser.py`): a rebound name is refused before anything else looks at the
   request, preflights and `/health` included.
2. CORS (`app.py`, only with CORS_ORIGINS): answers preflights, which carry no token, and adds
   its headers to every answer below it, so a listed page can read a 401 or 403 too.
3. Bearer auth (`auth.py`, only with API_TOKEN): nothing below learns of an unauthorized request.
4. Browser guard (`browser.py`): cross-origin changes (403) and non-JSON bodies (415).

The body limit and trailing-slash handling follow in `app.py`. Each check is a plain function of
a request's scope (`Refusal`), built once by `refusals`: `create_app` runs each one as a layer of
the stack (`RefusalMiddleware`) and hands the same ones to the fast read path (fast_reads.py),
so both make the same checks with the same state (the Host check's cache of allowed names).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.http.auth import BearerAuth
from orchestrator.http.browser import BrowserGuard, HostCheck
from orchestrator.settings import Settings

#: One check of a request: the answer refusing it, or None to let it through.
Refusal = Callable[[Scope], Response | None]


class RefusalMiddleware:
    """Sends the answer of `refusal` to an HTTP request it refuses; passes anything else on."""

    def __init__(self, app: ASGIApp, refusal: Refusal) -> None:
        self.app = app
        self.refusal = refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse the request if the check does; pass it on otherwise."""
        if scope["type"] == "http":
            refusal = self.refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def refusals(settings: Settings) -> list[Refusal]:
    """The checks, in the order above, on `settings`: the Host check (always on), bearer auth
    when API_TOKEN is set, then the browser guard (always on). CORS refuses nothing, so it is
    not among them: `create_app` puts its layer between the first and the rest, and the fast
    read path is off where it is on."""
    checks: list[Refusal] = [HostCheck(settings.allowed_hosts).refusal]
    if settings.api_tokens:
        checks.append(BearerAuth(settings.api_tokens).refusal)
    checks.append(BrowserGuard(settings.cors_origins).refusal)
    return checks
