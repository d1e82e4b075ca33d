"""Dispatch: the `Endpoint` record, and the Starlette routes built from a table of them.

Each endpoint names its handler and the msgspec types of its inputs and output; the table itself
is endpoint_table.py. Here the path ids, JSON bodies and query strings are decoded and checked
before the handler runs, so handlers see typed values; openapi.py documents the same table, so
what is documented is what is served.
"""

from __future__ import annotations

import enum
import functools
import re
import types
import typing
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.http.bounds import check_config_bounds
from orchestrator.http.errors import InvalidInput, status_of

Handler = Callable[..., Awaitable[Response]]

#: Deepest nesting accepted in a free-form JSON value (config): deeper is a 422, not a crash.
MAX_JSON_DEPTH = 32
_INT64 = (-(2**63), 2**63 - 1)
_ID = re.compile(r"[1-9][0-9]{0,18}")
#: Set on a command's answer built from the command's own outcome because the read models had
#: not caught up with it in time (see routes.settled): a read right after may not show it yet.
READ_MODEL_LAG_HEADER = "X-Read-Model-Lag"


class _Lag:
    """Whether the request being handled answered before its read models caught up."""

    __slots__ = ("lagging",)

    def __init__(self) -> None:
        self.lagging = False


# A mutable holder rather than a flag: a handler that runs part of its work in a task of its own
# still marks the holder its request's dispatcher looks at.
_lag: ContextVar[_Lag | None] = ContextVar("read_model_lag", default=None)


def mark_read_model_lag() -> None:
    """Say that this request's answer was built before the read models included its events."""
    holder = _lag.get()
    if holder is not None:
        holder.lagging = True


@dataclass(frozen=True)
class Endpoint:
    """One method on one path."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    status: int = 200
    body: type[Any] | None = None
    query: type[Any] | None = None
    response: Any = None
    errors: tuple[int, ...] = ()
    #: What the success response carries when it is not a JSON `response` type.
    media_type: str = "application/json"

    @property
    def path_params(self) -> list[str]:
        """Names of the `{...}` parameters in the path (all positive 64-bit ids)."""
        return re.findall(r"{(\w+)}", self.path)


def positive_id(raw: str) -> int | None:
    """`raw` as a positive 64-bit integer in plain decimal digits, or None if it is not one."""
    if not _ID.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= _INT64[1] else None


def path_id(request: Request, name: str) -> int:
    """A `{..._id}` path parameter as a positive 64-bit integer, or a 422 naming it."""
    raw = str(request.path_params[name])
    value = positive_id(raw)
    if value is None:
        raise InvalidInput(f"{name} must be a positive integer below 2**63, got {raw[:40]!r}")
    return value


async def decode_body(request: Request, body_type: type[Any]) -> Any:
    """The JSON body as `body_type`; a clear 422 for every way it can be wrong."""
    raw = await request.body()
    try:
        value = msgspec.json.decode(raw, type=body_type)
    except UnicodeDecodeError as exc:  # msgspec raises it for bad UTF-8 inside a string
        raise msgspec.DecodeError(f"invalid UTF-8 in a string: {exc.reason}") from None
    except RecursionError:
        raise InvalidInput(
            f"the request body is nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    for name, encode_name in _field_names(body_type):
        check_json_value(getattr(value, name), f"$.{encode_name}", 0)
        if name == "config":  # free-form and kept in memory: bounded in size and entries
            check_config_bounds(request, getattr(value, name))
    return value


_defaults: dict[type[Any], Any] = {}
_field_names_of: dict[type[Any], tuple[tuple[str, str], ...]] = {}


def _field_names(struct_type: type[Any]) -> tuple[tuple[str, str], ...]:
    # msgspec.structs.fields evaluates the annotations on every call: far too slow per request.
    if struct_type not in _field_names_of:
        fields = msgspec.structs.fields(struct_type)
        _field_names_of[struct_type] = tuple((f.name, f.encode_name) for f in fields)
    return _field_names_of[struct_type]


_enum_fields_of: dict[type[Any], tuple[tuple[str, type[enum.Enum]], ...]] = {}


def _query_defaults(query_type: type[Any]) -> Any:
    if query_type not in _defaults:
        _defaults[query_type] = query_type()
    return _defaults[query_type]


def _enum_fields(query_type: type[Any]) -> tuple[tuple[str, type[enum.Enum]], ...]:
    if query_type not in _enum_fields_of:
        found = ((f.encode_name, _enum_of(f.type)) for f in msgspec.structs.fields(query_type))
        _enum_fields_of[query_type] = tuple((n, c) for n, c in found if c is not None)
    return _enum_fields_of[query_type]


def decode_query(request: Request, query_type: type[Any]) -> Any:
    """Query parameters as `query_type` (strings converted); a 422 names a bad parameter."""
    if not request.scope.get("query_string"):
        return _query_defaults(query_type)  # the common case costs nothing
    params = dict(request.query_params)
    for name, choices in _enum_fields(query_type):
        raw = params.get(name)
        if raw is None:
            continue
        # Values in any case, as the original service's clients send them (`completed`, ...).
        value = _enum_values(choices).get(raw.casefold())
        if value is None:
            allowed = ", ".join(str(m.value) for m in choices)
            raise InvalidInput(f"{name} must be one of {allowed}; got {raw[:40]!r}")
        params[name] = value
    try:
        return msgspec.convert(params, query_type, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid query parameter: {exc}") from None


_enum_values_of: dict[type[enum.Enum], dict[str, Any]] = {}


def _enum_values(choices: type[enum.Enum]) -> dict[str, Any]:
    if choices not in _enum_values_of:
        _enum_values_of[choices] = {str(m.value).casefold(): m.value for m in choices}
    return _enum_values_of[choices]


def check_json_value(value: Any, where: str, depth: int) -> None:
    """Refuse free-form JSON that later readers would choke on: too deep, or ints past 64 bits."""
    if depth > MAX_JSON_DEPTH:
        raise InvalidInput(f"{where} is nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, bool):
        return
    if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
        raise InvalidInput(f"{where} is an integer that does not fit in 64 bits")
    if isinstance(value, dict):
        for key, item in value.items():
            check_json_value(item, f"{where}.{key}"[:200], depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_json_value(item, f"{where}[...]", depth + 1)


def _enum_of(annotation: Any) -> type[enum.Enum] | None:
    candidates = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, enum.Enum):
            return candidate
    return None


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


#: Runs a handler call for an endpoint (or answers without it): the Idempotency-Key guard.
CommandGuard = Callable[[Request, Endpoint, Callable[[], Awaitable[Response]]], Awaitable[Response]]


#: Told each answered request: method, the route's path template, status (for /metrics).
RequestObserver = Callable[[str, str, int], None]


def build_routes(
    endpoints: Sequence[Endpoint],
    guard: CommandGuard | None = None,
    observe: RequestObserver | None = None,
) -> list[Route]:
    """One Starlette route per path; it dispatches on the method and decodes inputs first.

    With a `guard`, every handler runs through it, after its inputs are decoded; `observe` is
    told every request's method, path template and status.
    """
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
    return [
        Route(path, _observed(path, _dispatcher(methods, guard), observe), methods=list(methods))
        for path, methods in by_path.items()
    ]


def _observed(
    path: str, dispatch: Callable[[Request], Awaitable[Response]], observe: RequestObserver | None
) -> Callable[[Request], Awaitable[Response]]:
    if observe is None:
        return dispatch

    async def observed(request: Request) -> Response:
        try:
            response = await dispatch(request)
        except Exception as exc:
            observe(request.method, path, status_of(exc))
            raise
        observe(request.method, path, response.status_code)
        return response

    return observed


def _dispatcher(
    methods: dict[str, Endpoint], guard: CommandGuard | None
) -> Callable[[Request], Awaitable[Response]]:
    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        endpoint = methods[method]
        inputs: list[Any] = []
        if endpoint.body is not None:
            inputs.append(await decode_body(request, endpoint.body))
        if endpoint.query is not None:
            inputs.append(decode_query(request, endpoint.query))
        if method == "GET":  # a read: no key to honour, no command to wait for
            return await endpoint.handler(request, *inputs)
        lag = _Lag()
        token = _lag.set(lag)
        try:
            call = functools.partial(endpoint.handler, request, *inputs)
            response = await (call() if guard is None else guard(request, endpoint, call))
        finally:
            _lag.reset(token)
        if lag.lagging:
            response.headers[READ_MODEL_LAG_HEADER] = "true"
        return response

    return dispatch
