"""GET /ui: the live dashboard, a static page that reads and drives the JSON API from a browser.

The page, its script modules and its stylesheet are files of the package (`static/ui/`, the
project's own code: no library, no build step, no CDN), served by this app like the docs pages
(`docs.py`) and, like them, left out of `/openapi.json` and public when API_TOKEN is set: they
hold no data. The page asks for the token itself, keeps it in the tab's sessionStorage and sends
it as a bearer header on every call, the event stream included (it reads /events/stream with
`fetch`, not `EventSource`, which cannot send headers: no token ever goes into a URL).

Every answer carries a Content-Security-Policy that allows only this origin: scripts and styles
from files (the page has no inline script or style), requests to this server only, no frames,
no plugins, no form posts. So even a workflow name that holds markup could not run code in the
page (which renders names as text anyway), nor send what it reads anywhere else.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Only this origin, for everything the page may load or call.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
#: Headers of the page and of every file it loads.
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
#: Where the page's files are, in the package and on the server.
_PACKAGE, _FOLDER = "orchestrator.http", "static/ui"
STATIC_PREFIX = "/ui/static"
#: The page's marker of whether the API wants a token; replaced as the page is served.
_AUTH_MARKER = 'data-auth="off"'


def page_html(*, auth: bool) -> bytes:
    """The dashboard page, telling its script whether the API needs a token (so it asks for
    one before its first call instead of after a 401)."""
    html = (resources.files(_PACKAGE) / _FOLDER / "index.html").read_text(encoding="utf-8")
    if _AUTH_MARKER not in html:
        raise RuntimeError(f"static/ui/index.html lost its {_AUTH_MARKER} marker")
    return html.replace(_AUTH_MARKER, f'data-auth="{"bearer" if auth else "off"}"').encode()


class _SecurityHeaders:
    """Adds SECURITY_HEADERS to every answer of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers to the answer's start."""

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def ui_routes(*, auth: bool = False) -> list[BaseRoute]:
    """GET /ui (also /ui/) and the page's files under /ui/static/."""
    body = page_html(auth=auth)
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}

    async def dashboard(request: Request) -> Response:
        return Response(body, media_type="text/html; charset=utf-8", headers=headers)

    return [
        Route("/ui", dashboard, methods=["GET"]),
        Mount(
            STATIC_PREFIX,
            app=_SecurityHeaders(StaticFiles(packages=[(_PACKAGE, _FOLDER)])),
            name="ui-static",
        ),
    ]
