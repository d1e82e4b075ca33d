"""Optional bearer-token auth: with API_TOKEN set, every route but the public ones needs a token.

The public routes are `/health` (liveness probes carry no credentials), the documentation (the
two viewer pages, their vendored scripts and `/openapi.json`) and the dashboard page `/ui` with
its files. A browser cannot attach a bearer token to a page it navigates to, so protected pages
could never be opened, and Swagger UI's "Authorize" button (the document declares the bearer
scheme when auth is on) and the dashboard's token prompt need the page first. They hold no data:
the document describes the API, which the source and README describe too, the dashboard reads
everything it shows through the API with the token, and `/health` already names the version.

A missing token and a wrong one are both 401 (RFC 6750: `invalid_token` is a 401; a 403 would
mean the token is good but not enough, and every token here opens everything). The token is
checked against every configured token, in constant time, so neither which token matched nor how
much of one matched shows in the answer's timing.

An accepted request carries its token's fingerprint (`principal_of`): Idempotency-Keys are kept
per token, so two clients that pick the same key never get each other's answers. A public path
is still answered without a token, but one that is sent and accepted is noted the same way
(`/health` tells its full reason only to a caller with a token).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from starlette.responses import Response
from starlette.types import Scope

from orchestrator.http.errors import error_response

#: Paths answered without a token (after the trailing slash is dropped, as routing does).
PUBLIC_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/redoc", "/ui"})
#: Path prefixes answered without a token: the viewers' vendored scripts, styles and icon, and
#: the dashboard's own files.
PUBLIC_PREFIXES = ("/docs/static/", "/redoc/static/", "/ui/static/")

_CHALLENGE = 'Bearer realm="orchestrator"'
#: The key, in the request's `scope["state"]`, of the accepted token's fingerprint.
PRINCIPAL = "principal"


def fingerprint(token: bytes) -> str:
    """A short, stable name for a token that does not reveal it (its SHA-256, 16 hex digits)."""
    return hashlib.sha256(token).hexdigest()[:16]


def principal_of(scope: Scope) -> str:
    """The fingerprint of the request's accepted token; "" when none was (or auth is off)."""
    state = scope.get("state")
    principal = state.get(PRINCIPAL, "") if isinstance(state, dict) else ""
    return principal if isinstance(principal, str) else ""


def is_public(path: str) -> bool:
    """Whether `path` is answered without a token even when API_TOKEN is set."""
    routed = path.rstrip("/") or "/"
    return routed in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class TokenChecker:
    """Says whether a presented token is one of the configured ones, in constant time."""

    def __init__(self, tokens: Sequence[str]) -> None:
        # Digests, so every comparison is over 32 bytes and no token's length shows either.
        self._digests = tuple(hashlib.sha256(token.encode()).digest() for token in tokens)

    def accepts(self, presented: bytes) -> bool:
        """True if `presented` equals one of the tokens; compares with every one of them."""
        digest = hashlib.sha256(presented).digest()
        accepted = False
        for expected in self._digests:
            # No early exit: the time taken does not depend on which token (if any) matched.
            accepted |= hmac.compare_digest(digest, expected)
        return accepted


def bearer_credentials(scope: Scope) -> bytes | None:
    """The credentials of the request's `Authorization: Bearer ...` header, or None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = bytes(value).strip().partition(b" ")
            if scheme.lower() != b"bearer" or not credentials.strip():
                return None
            return credentials.strip()
    return None


class BearerAuth:
    """The token check as a plain function of a request's scope (its layer in the stack and the
    fast read path of fast_reads.py both call it, see security.py)."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.checker = TokenChecker(tokens)

    def refusal(self, scope: Scope) -> Response | None:
        """None if the path is public or the bearer token is accepted (whose fingerprint is then
        noted in the scope's state); else the 401 answer."""
        credentials = bearer_credentials(scope)
        accepted = credentials is not None and self.checker.accepts(credentials)
        if accepted and credentials is not None:
            scope.setdefault("state", {})[PRINCIPAL] = fingerprint(credentials)
        if accepted or is_public(scope["path"]):
            return None
        if credentials is None:
            detail = (
                "this server needs an API token: send the header "
                "'Authorization: Bearer <token>' with one of the tokens in API_TOKEN"
            )
            challenge = _CHALLENGE
        else:
            # The presented token is never echoed: it may be a real token of another service.
            detail = "the bearer token is not one of the tokens in API_TOKEN"
            challenge = f'{_CHALLENGE}, error="invalid_token"'
        return error_response(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})
