"""Both `/workflows` and `/workflows/` are answered directly, as the original service did.

The original's list and create routes ended in a slash (`/workflows/`, `/tasks/`). Starlette
would answer the other form with a 307 redirect and an empty body, which curl and httpx do not
follow by default (and a redirected POST is easy to get wrong), so the path loses its trailing
slash before routing instead, on every route.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


def routed_path(path: str) -> str:
    """`path` as it is routed: without its trailing slashes (the root `/` stays as it is)."""
    if len(path) > 1 and path.endswith("/"):
        return path.rstrip("/") or "/"
    return path


class TrailingSlashMiddleware:
    """Routes `/path/` as `/path` (the root `/` stays as it is)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with the trailing slash of its path removed."""
        path: str = scope.get("path", "")
        if scope["type"] == "http":
            routed = routed_path(path)
            if routed != path:
                scope = dict(scope)
                scope["path"] = routed
                raw: bytes | None = scope.get("raw_path")
                if raw is not None:
                    scope["raw_path"] = raw.rstrip(b"/") or b"/"
        await self.app(scope, receive, send)
