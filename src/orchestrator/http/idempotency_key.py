"""The Idempotency-Key header: which requests take it, what a valid key is, what it identifies.

Kept apart from the machinery (idempotency.py) so the OpenAPI document can describe the header
without importing the runtime.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

from orchestrator.http.errors import InvalidInput

HEADER = "Idempotency-Key"
#: Set (to "true") on an answer that repeats the first answer given for the key.
REPLAYED_HEADER = "Idempotent-Replayed"
#: Every endpoint with one of these methods is a command; all of them accept the key.
COMMAND_METHODS = frozenset({"POST", "PUT", "DELETE"})
MAX_KEY_LENGTH = 255
#: Printable ASCII, spaces inside only: HTTP drops them at either end, so such a key could
#: never arrive as it was sent.
KEY_PATTERN = "^[\\x21-\\x7e]([\\x20-\\x7e]*[\\x21-\\x7e])?$"
_KEY = re.compile(KEY_PATTERN)


def checked_key(values: Sequence[str]) -> str:
    """The one key sent, or a 422 saying what is wrong with it."""
    if len(values) != 1:
        raise InvalidInput(f"send one {HEADER} header, not {len(values)}")
    key = values[0]
    if len(key) <= MAX_KEY_LENGTH and _KEY.fullmatch(key):
        return key
    if not key:
        got = "an empty value"
    elif len(key) > MAX_KEY_LENGTH:
        got = f"{len(key)} characters"
    else:
        got = repr(key[:40])
    raise InvalidInput(
        f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters, with no space at "
        f"either end; got {got}"
    )


def request_hash(method: str, path: str, body: bytes) -> bytes:
    """What a key is bound to: SHA-256 of the method, the path and the body's bytes.

    Query strings are left out: command routes ignore query parameters, so two requests that
    differ only there do the same thing.
    """
    digest = hashlib.sha256(method.upper().encode())
    digest.update(b"\x00")
    digest.update(path.encode())
    digest.update(b"\x00")
    digest.update(body)
    return digest.digest()


def openapi_parameter() -> dict[str, Any]:
    """The header as an OpenAPI parameter of every command operation."""
    return {
        "name": HEADER,
        "in": "header",
        "required": False,
        "description": (
            "Makes the command safe to retry: a repeat with the same key gets the first answer "
            "(same status and body, header Idempotent-Replayed: true) and changes nothing; the "
            "same key with another method, path or body is 422. Keys are kept, across "
            "restarts, for IDEMPOTENCY_TTL_SECONDS (a day by default)."
        ),
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_KEY_LENGTH,
            "pattern": KEY_PATTERN,
        },
    }
