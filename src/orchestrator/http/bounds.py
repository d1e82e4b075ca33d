"""Size bounds on what a valid request may store and what one answer may carry.

A `config` is kept in memory by several caches for as long as its workflow or task is hot, so a
valid request must not be able to make it arbitrarily large (MAX_CONFIG_BYTES) or made of
arbitrarily many small values, each a Python object of its own (MAX_CONFIG_KEYS). List answers
are built item by item and stop before they pass MAX_RESPONSE_BYTES, saying so in headers, so a
page of big items costs bounded memory and the body keeps its documented shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import urlencode

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from orchestrator.http.errors import InvalidInput
from orchestrator.projections.models import ReadModel
from orchestrator.projections.storage import ListQuery
from orchestrator.settings import Settings

#: Set to "true" on a list answer cut short by MAX_RESPONSE_BYTES.
TRUNCATED_HEADER = "X-Truncated"
#: On a cut-short list, how many items it holds (the `skip` to add for the rest).
COUNT_HEADER = "X-Item-Count"

#: Items read from storage at a time while a list answer is built: its memory stays bounded by
#: this many items, whatever `limit` asks for.
FETCH_CHUNK = 100

_encoder = msgspec.json.Encoder()


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.runtime.settings
    return settings


def check_config_bounds(request: Request, config: Any, where: str = "$.config") -> None:
    """Refuse (422, before anything is recorded) a config over MAX_CONFIG_BYTES encoded or with
    more than MAX_CONFIG_KEYS entries: object keys and array items, at every depth.

    Array items count as keys (an index is a key): ten thousand tiny items cost as much memory
    as ten thousand keys.
    """
    if not isinstance(config, dict):
        return
    settings = _settings(request)
    entries = _count_entries(config, settings.max_config_keys)
    if entries > settings.max_config_keys:
        raise InvalidInput(
            f"{where} has more than {settings.max_config_keys} keys and array items at all "
            "depths (MAX_CONFIG_KEYS)"
        )
    size = len(_encoder.encode(config))
    if size > settings.max_config_bytes:
        raise InvalidInput(
            f"{where} is {size} bytes as JSON, over the limit of {settings.max_config_bytes} "
            "bytes (MAX_CONFIG_BYTES)"
        )


def _count_entries(value: Any, limit: int) -> int:
    # Iterative, and stops once past the limit: a million-item body costs no more than needed.
    count = 0
    pending = [value]
    while pending and count <= limit:
        item = pending.pop()
        if isinstance(item, dict):
            count += len(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            count += len(item)
            pending.extend(item)
    return count


def max_response_bytes(request: Request) -> int:
    """MAX_RESPONSE_BYTES of the app serving `request`."""
    return _settings(request).max_response_bytes


class BoundedArray:
    """A JSON array built from encoded items, refusing the item that would pass the bound.

    The first item is always taken, so a client paging through can never be stuck on an item
    larger than the bound (which the config bound keeps far below the default).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.items: list[bytes] = []
        self.size = 2  # the brackets
        self.truncated = False

    def add(self, item: bytes) -> bool:
        """Take `item` if it fits (a comma included); False, and truncated, if not."""
        extra = len(item) + (1 if self.items else 0)
        if self.items and self.size + extra > self.max_bytes:
            self.truncated = True
            return False
        self.items.append(item)
        self.size += extra
        return True

    def extend(self, items: Iterable[bytes]) -> bool:
        """Take items until one does not fit; False once one did not."""
        return all(self.add(item) for item in items)

    def body(self) -> bytes:
        """The JSON array."""
        return b"[" + b",".join(self.items) + b"]"


async def fill_page(
    page: BoundedArray,
    fetch: Callable[[int, int], Awaitable[list[Any]]],
    limit: int,
    encode: Callable[[Any], bytes],
) -> None:
    """Add up to `limit` items from `fetch(offset, count)`, FETCH_CHUNK at a time, until one
    does not fit in `page` or `fetch` runs out."""
    offset = 0
    while offset < limit:
        count = min(FETCH_CHUNK, limit - offset)
        chunk = await fetch(offset, count)
        if not page.extend(encode(item) for item in chunk) or len(chunk) < count:
            return
        offset += count


async def bounded_list(
    request: Request, model: ReadModel, query: ListQuery, shape: Callable[[Any], Any]
) -> BoundedArray:
    """A page of read models, each shown as `shape(item)`, within MAX_RESPONSE_BYTES."""
    projector = request.app.state.runtime.projector
    page = BoundedArray(max_response_bytes(request))

    async def fetch(offset: int, count: int) -> list[Any]:
        chunk = dataclasses.replace(query, skip=query.skip + offset, limit=count)
        found: list[Any] = await projector.list_page(model, chunk)
        return found

    await fill_page(page, fetch, query.limit, lambda item: _encoder.encode(shape(item)))
    return page


def list_response(page: BoundedArray, next_page: str | None = None) -> Response:
    """The array as a JSON answer; when it was cut short, headers say so and where to go on:
    `X-Truncated: true`, `X-Item-Count: N` and `Link: <next_page>; rel="next"`."""
    return truncation_headers(Response(page.body(), media_type="application/json"), page, next_page)


def truncation_headers(
    response: Response, page: BoundedArray, next_page: str | None = None
) -> Response:
    """`response` with the headers of a cut-short page, if `page` was cut short."""
    if page.truncated:
        response.headers[TRUNCATED_HEADER] = "true"
        response.headers[COUNT_HEADER] = str(len(page.items))
        if next_page is not None:
            response.headers["Link"] = f'<{next_page}>; rel="next"'
    return response


def next_page(request: Request, **changes: int | str) -> str:
    """This request's path and query with `changes` made (the next page's address)."""
    query = {**request.query_params, **{name: str(value) for name, value in changes.items()}}
    return f"{request.url.path}?{urlencode(query)}"
