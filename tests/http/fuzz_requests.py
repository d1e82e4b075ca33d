"""Requests for the input fuzz suite (test_http_fuzz_inputs.py), as raw bytes (raw_asgi.py):
path segments, query strings, every header the app reads and any other, the method, and the
body (plausible ones of the route's type, any JSON, any bytes), sent in one to three chunks.
Three in four carry an allowed Host and the token, to reach the route; the rest test the guards.
"""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.parse
from typing import Any

import msgspec
from hypothesis import strategies as st

from orchestrator.http.endpoint_table import ENDPOINTS
from orchestrator.http.request_types import (
    CreateTaskRequest,
    CreateWorkflowRequest,
    StartWorkflowRequest,
    UpdateWorkflowRequest,
)
from tests.http.raw_asgi import quote_segment

TOKEN = "fuzz-token-0123456789abcdef"
SEEDED_IDS = ("1", "2", "3", "4", "5")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "BREW")
TRICKY_IDS = (
    "0", "01", "-1", "+1", "1.0", "1e3", " 1", "1 ", "²", "٣", "\uff11", "9223372036854775807",
    "9223372036854775808", "99999999999999999999", "..", ".", "", "%", "%00", "\x00", "a/b",
    "\u202e1", "null", "[]",
)  # fmt: skip
#: Values that broke or nearly broke parsers: other scripts' digits (as UTF-8, and as the latin-1
#: bytes Starlette decodes headers from), signs, exponents, spaces, 2**63, NUL, bidi controls.
EDGE_VALUES = [t.encode() for t in TRICKY_IDS] + [b"\xb2", b"\xb3\xb9", b"5\xb9", b"\xff\xfe"]
STATIC_FILES = {
    "/docs/static/{file}": ("swagger-ui.css", "favicon-32x32.png", "LICENSE", "NOTICE"),
    "/redoc/static/{file}": ("LICENSE", "redoc.standalone.js.LICENSE.txt"),
}
DOC_PATHS = ("/openapi.json", "/docs", "/redoc", *STATIC_FILES)


@dataclasses.dataclass(frozen=True)
class Route:
    """One method on one path template, with the types its body and query decode to."""

    method: str
    path: str
    body: type[Any] | None = None
    query: type[Any] | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ROUTES = [Route(e.method, e.path, e.body, e.query) for e in ENDPOINTS] + [
    Route("GET", path) for path in DOC_PATHS
]

# Values ------------------------------------------------------------------------------------------

latin1 = st.text(st.characters(max_codepoint=255), max_size=40).map(lambda t: t.encode("latin-1"))
junk = st.one_of(st.binary(max_size=60), latin1, st.text(max_size=30).map(str.encode))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)  # fmt: skip
names = st.one_of(st.text(min_size=1, max_size=12), st.text(max_size=300), json_values)
configs = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            # Small where valid: generated work must finish at once, not compute for a minute.
            "iterations": st.integers(-3, 300) | json_values,
            "duration": st.floats(0, 0.01) | json_values,
            "simulate_failure": st.booleans() | json_values,
            "fail_until_retry": st.integers(-2, 3) | json_values,
            "url": st.text(max_size=30),
        },
    ),
    st.dictionaries(st.text(max_size=10), json_values, max_size=4),
    json_values,
)
optional_fields: dict[str, st.SearchStrategy[Any]] = {
    "description": st.none() | st.text(max_size=50) | json_values,
    "config": configs,
    "auto_start": st.just(False) | json_values,  # mostly manual: little engine work
    "unknown": json_values,
}
plausible_bodies: dict[type[Any], st.SearchStrategy[Any]] = {
    StartWorkflowRequest: st.fixed_dictionaries({"name": names}, optional=optional_fields),
    CreateWorkflowRequest: st.fixed_dictionaries({"name": names}, optional=optional_fields),
    UpdateWorkflowRequest: st.fixed_dictionaries({}, optional={"name": names, **optional_fields}),
    CreateTaskRequest: st.fixed_dictionaries(
        {
            "name": names,
            "task_type": st.sampled_from(["sleep", "compute", "http_request", "SLEEP", "x"]),
        },
        optional={
            **optional_fields,
            "workflow_id": st.sampled_from([1, 2, 0, -1, 2**63]) | json_values,
            "max_retries": st.integers(-1, 11) | json_values,
        },
    ),
}


def encoded_json(value: Any) -> bytes:
    """JSON text as a careless client writes it: NaN and Infinity as bare words, big ints."""
    return json.dumps(value, allow_nan=True).encode()


def body_for(route: Route) -> st.SearchStrategy[bytes]:
    """Bodies: plausible ones of the route's type, any JSON, any bytes, deep or broken JSON."""
    anything = st.one_of(
        json_values.map(encoded_json),
        st.binary(max_size=200),
        st.integers(20, 40).map(lambda depth: b"[" * depth + b"]" * depth),
        st.sampled_from([b"", b"{", b'{"name": "\xff\xfe"}', b'{"name": "a"}' * 2, b"\x00"]),
    )
    plausible = plausible_bodies.get(route.body) if route.body else None
    if plausible is None:
        return anything
    return st.one_of(plausible.map(encoded_json), plausible.map(encoded_json), anything)


def path_values(route: Route) -> st.SearchStrategy[str]:
    """Values for the `{...}` segment: mostly seeded ids, then numbers and junk of every kind."""
    if route.path in STATIC_FILES:
        good = st.sampled_from(STATIC_FILES[route.path])
        return st.one_of(good, good, st.sampled_from(TRICKY_IDS), st.text(max_size=40))
    numbers = st.integers(-(2**65), 2**65).map(str)
    return st.one_of(
        st.sampled_from(SEEDED_IDS), st.sampled_from(TRICKY_IDS), numbers, st.text(max_size=30)
    )


def query_for(route: Route) -> st.SearchStrategy[bytes]:
    """A query string: the route's own names with odd values, unknown names, broken escapes."""
    known = [f.encode_name for f in msgspec.structs.fields(route.query)] if route.query else []
    keys = st.sampled_from(known) | st.text(max_size=8) if known else st.text(max_size=8)
    values = st.one_of(
        st.integers(-(2**64), 2**64).map(str),
        st.sampled_from(["0", "1", "1000", "1001", "COMPLETE", "completed", "", "²", "1e3"]),
        st.text(max_size=20),
    )
    pairs = st.lists(st.tuples(keys, values), max_size=4).map(
        lambda items: urllib.parse.urlencode(items).encode()
    )
    return st.one_of(st.just(b""), pairs, pairs, junk.map(as_a_server_delivers))


def as_a_server_delivers(raw: bytes) -> bytes:
    """Raw query bytes as they reach the app: httptools refuses a request line with bytes outside
    printable ASCII itself (400), so those come escaped; bare `%` and `%zz` stay as sent."""
    return urllib.parse.quote_from_bytes(raw, safe="!$%&'()*+,/:;=?@[]^_`{|}~").encode()


def optional(
    header: bytes, values: st.SearchStrategy[bytes], often: bool
) -> st.SearchStrategy[Any]:
    """The header with a generated value, or no such header (the more likely, unless `often`)."""
    present = values.map(lambda value: (header, value))
    return st.one_of(present, present, st.none()) if often else st.one_of(present, *[st.none()] * 3)


def headers_for(
    route: Route, hosts: tuple[str, ...]
) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
    """Every header the API reads, each absent or generated.

    Three requests in four carry an allowed Host and the token, so they reach the route and
    test what it reads; the fourth has both generated too, and tests the guards.
    """
    good_hosts = [h.encode() for h in hosts] + [b"localhost:8000", b"127.0.0.1:8000", b"[::1]:80"]
    host = st.one_of(
        st.sampled_from(good_hosts),
        st.sampled_from([b"evil.example", b"[::1", b"localhost:99999", b"localhost:\xb2", b""]),
        junk,
    )
    authorization = st.one_of(
        st.just(f"Bearer {TOKEN}".encode()),
        st.sampled_from([b"Bearer", b"Bearer ", b"Basic Zm9v", f"bearer {TOKEN}x".encode()]),
        junk,
    )
    passing = st.tuples(
        st.sampled_from(good_hosts).map(lambda value: (b"host", value)),
        st.just((b"authorization", f"Bearer {TOKEN}".encode())),
    )
    guarded = st.tuples(
        optional(b"host", host, often=True), optional(b"authorization", authorization, often=True)
    )
    numbers = st.integers(-(2**64), 2**66).map(lambda n: str(n).encode())
    content_types = st.sampled_from(
        [b"application/json", b"application/json; charset=utf-8", b"application/x+json",
         b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x",
         b"", b"application/jsonx", b"application/json; charset=\xff"]
    )  # fmt: skip
    tricky = st.sampled_from(EDGE_VALUES)
    last_event_ids = st.one_of(numbers, tricky, tricky, junk)
    origins = st.sampled_from([b"null", b"http://localhost", b"http://x"]) | junk
    reads_body = route.body is not None
    parts = st.tuples(
        st.one_of(passing, passing, passing, guarded),
        optional(b"content-type", st.one_of(content_types, junk), reads_body),
        optional(b"content-length", st.one_of(numbers, junk), reads_body),
        optional(b"transfer-encoding", st.sampled_from([b"chunked", b""]) | junk, reads_body),
        optional(b"last-event-id", last_event_ids, route.path == "/events/stream"),
        optional(b"idempotency-key", junk | st.text(max_size=300).map(str.encode), reads_body),
        optional(b"origin", origins, False),
        optional(b"sec-fetch-site", st.sampled_from([b"cross-site", b"none"]) | junk, False),
        st.lists(st.tuples(st.binary(min_size=1, max_size=12), junk), max_size=2),
    )
    return parts.map(_flatten)


def _flatten(parts: tuple[Any, ...]) -> list[tuple[bytes, bytes]]:
    guards, *single, extra = parts
    return [pair for pair in (*guards, *single) if pair is not None] + list(extra)


@st.composite
def requests(draw: st.DrawFn, route: Route, hosts: tuple[str, ...]) -> dict[str, Any]:
    """One generated request for `route`."""
    path = route.path
    for name in re.findall(r"{(\w+)}", route.path):
        path = path.replace(f"{{{name}}}", quote_segment(draw(path_values(route))).decode())
    if draw(st.integers(0, 5)) == 0:
        path += "/"
    body = draw(body_for(route))
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=2)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    method = draw(st.one_of(st.just(route.method), st.just(route.method), st.sampled_from(METHODS)))
    return {
        "method": method,
        "raw_path": path.encode(),
        "query": draw(query_for(route)),
        "headers": draw(headers_for(route, hosts)),
        "body_chunks": chunks,
    }


# Known edge cases, each in every slot ------------------------------------------------------------

EDGE_BODIES: dict[type[Any] | None, bytes] = {
    StartWorkflowRequest: b'{"name": "edge", "auto_start": false}',
    CreateWorkflowRequest: b'{"name": "edge"}',
    UpdateWorkflowRequest: b'{"description": "edge"}',
    CreateTaskRequest: b'{"name": "edge", "task_type": "sleep", "config": {"duration": 0}}',
}


def edge_cases(route: Route, hosts: tuple[str, ...]) -> list[dict[str, Any]]:
    """A request that passes every guard, then the same with each edge value in each input it
    has: a path segment, each query parameter the route reads, and each header it may read."""
    host = hosts[0].encode()
    good = {b"host": host, b"authorization": f"Bearer {TOKEN}".encode()}
    params = re.findall(r"{(\w+)}", route.path)

    def request(
        segment: str = "3", query: bytes = b"", headers: dict[bytes, bytes] | None = None
    ) -> dict[str, Any]:
        path = route.path
        for name in params:
            path = path.replace(f"{{{name}}}", quote_segment(segment).decode())
        if route.path in STATIC_FILES and segment == "3":
            path = route.path.replace("{file}", "LICENSE")
        return {
            "method": route.method,
            "raw_path": path.encode(),
            "query": query,
            "headers": list({**good, **(headers or {})}.items()),
            "body_chunks": [EDGE_BODIES.get(route.body, b"")],
        }

    cases = [request()]
    known = [f.encode_name for f in msgspec.structs.fields(route.query)] if route.query else []
    for value in EDGE_VALUES:
        text = value.decode("utf-8", errors="replace")
        cases += [request(segment=text)] if params else []
        cases += [request(query=f"{k}={urllib.parse.quote(text)}".encode()) for k in known]
        for header in HEADERS_READ:
            cases.append(request(headers={header: value}))
    return cases


#: Every header some part of the app reads.
HEADERS_READ = (
    b"host", b"authorization", b"content-type", b"content-length", b"transfer-encoding",
    b"last-event-id", b"idempotency-key", b"origin", b"sec-fetch-site",
)  # fmt: skip
