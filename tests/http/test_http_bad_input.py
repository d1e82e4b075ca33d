"""The bad-input matrix: every way a request can be wrong gets a 4xx JSON error naming the problem.

Never a 500, never an HTML page, and nothing changes: after each refusal the workflow totals,
the workflow and task lists and the log position are what they were before. Body cases run
against every route that takes a body: POST /workflow/start, POST /workflows,
PUT /workflows/{id} and POST /tasks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from starlette.testclient import TestClient

from orchestrator.http.dispatch import MAX_JSON_DEPTH
from orchestrator.http.endpoint_table import ENDPOINTS
from orchestrator.settings import Settings
from tests.settings_for_tests import TESTCLIENT_HOSTS

JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class BodyRoute:
    """A route that takes a JSON body, with a body it accepts."""

    method: str
    path: str
    valid: dict[str, Any]
    success: int
    requires_name: bool = True

    def url(self, workflow_id: int) -> str:
        """The path, aimed at the seeded workflow where it names one."""
        return self.path.format(workflow_id=workflow_id)

    def body(self, **fields: Any) -> dict[str, Any]:
        """The valid body with `fields` replacing or adding keys."""
        return {**self.valid, **fields}

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


BODY_ROUTES = [
    BodyRoute("POST", "/workflow/start", {"name": "fine", "auto_start": False}, 201),
    BodyRoute("POST", "/workflows", {"name": "fine"}, 201),
    BodyRoute("PUT", "/workflows/{workflow_id}", {"name": "fine"}, 200, requires_name=False),
    BodyRoute(
        "POST",
        "/tasks",
        {"name": "fine", "task_type": "compute", "config": {"iterations": 1}},
        201,
    ),
]
ROUTE_IDS = [str(route) for route in BODY_ROUTES]

#: Path and query ids that are not positive 64-bit integers (leading zeros are refused too).
BAD_IDS = ["0", "-1", "abc", "1.5", str(2**63), str(2**64), "00001"]


@pytest.fixture
def seeded_workflow(client: TestClient) -> int:
    """A created (not started) workflow, so the lists are not empty and PUT has a target."""
    response = client.post("/workflows", json={"name": "seed", "config": {"keep": 1}})
    assert response.status_code == 201, response.text
    workflow_id = response.json()["workflow_id"]
    assert isinstance(workflow_id, int)
    return workflow_id


def observable_state(client: TestClient) -> dict[str, Any]:
    """Everything a refused request must leave as it was."""
    health = client.get("/health")
    assert health.status_code == 200, health.text
    return {
        "totals": client.get("/execution/stats").json()["workflows"],
        "workflows": client.get("/workflows").json(),
        "tasks": client.get("/tasks").json(),
        "log_position": health.json()["log_position"],
    }


def error_body(response: httpx2.Response) -> dict[str, str]:
    """The error body, after checking it is JSON with exactly the two documented keys."""
    assert response.headers["content-type"] == "application/json", response.text
    body = response.json()
    assert isinstance(body, dict)
    assert set(body) == {"error", "detail"}
    assert isinstance(body["error"], str)
    assert isinstance(body["detail"], str)
    return body


def refusal(
    client: TestClient,
    method: str,
    url: str,
    content: bytes | Iterator[bytes] | None = None,
    *,
    status: int = 422,
    error: str = "validation_error",
) -> str:
    """Send a request that must be refused with `status` and `error`, and change nothing.

    Returns the error's detail, for the caller to check what it names.
    """
    before = observable_state(client)

    response = client.request(method, url, content=content, headers=JSON)

    assert response.status_code == status, response.text
    body = error_body(response)
    assert body["error"] == error, body
    assert observable_state(client) == before
    return body["detail"]


def nested(depth: int) -> str:
    """`depth` levels of {"a": ...} around a 1."""
    return '{"a": ' * depth + "1" + "}" * depth


def with_raw_config(route: BodyRoute, raw_config: str) -> bytes:
    """The route's valid body with `config` spliced in as raw JSON text."""
    fields = {key: value for key, value in route.valid.items() if key != "config"}
    return (json.dumps(fields)[:-1] + f', "config": {raw_config}}}').encode()


# Not JSON at all ---------------------------------------------------------------------------------


#: Ways to spoil a route's valid JSON text.
MALFORMED: dict[str, Callable[[str], str]] = {
    "empty": lambda valid: "",
    "truncated": lambda valid: valid[:-1],
    "trailing-comma": lambda valid: valid[:-1] + ",}",
    "single-quotes": lambda valid: valid.replace('"', "'"),
    "unquoted-key": lambda valid: valid.replace('"name"', "name"),
    "form-encoded": lambda valid: "name=fine",
    "two-values": lambda valid: valid + " " + valid,
}


@pytest.mark.parametrize("spoil", MALFORMED.values(), ids=MALFORMED.keys())
@pytest.mark.parametrize("route", BODY_ROUTES, ids=ROUTE_IDS)
def test_malformed_json_is_refused_as_invalid_json(
    client: TestClient, seeded_workflow: int, route: BodyRoute, spoil: Callable[[str], str]
) -> None:
    content = spoil(json.dumps(route.valid)).encode()

    detail = refusal(
        client, route.method, route.url(seeded_workflow), content, error="invalid_json"
    )

    assert detail.startswith("the request body is not valid JSON: ")


@pytest.mark.parametrize(
    "content", [b"\xff\xfe{}", b"\xc3\x28"], ids=["byte-order-mark-16", "broken-sequence"]
)
@pytest.mark.parametrize("route", BODY_ROUTES, ids=ROUTE_IDS)
def test_bytes_that_are_not_utf8_are_refused_as_invalid_json(
    client: TestClient, seeded_workflow: int, route: BodyRoute, content: bytes
) -> None:
    detail = refusal(
        client, route.method, route.url(seeded_workflow), content, error="invalid_json"
    )

    assert detail.startswith("the request body is not valid JSON: ")


@pytest.mark.parametrize("route", BODY_ROUTES, ids=ROUTE_IDS)
def test_bytes_that_are_not_utf8_inside_a_string_are_refused_as_invalid_json(
    client: TestClient, seeded_workflow: int, route: BodyRoute
) -> None:
    content = json.dumps(route.body(name="@")).encode().replace(b"@", b"\xff\xfe")

    detail = refusal(
        client, route.method, route.url(seeded_workflow), content, error="invalid_json"
    )

    assert detail.startswith("the request body is not valid JSON: ")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("route", BODY_ROUTES, ids=ROUTE_IDS)
def test_nan_and_infinity_literals_are_invalid_json(
    client: TestClient, seeded_workflow: int, route: BodyRoute, literal: str
) -> None:
    content = with_raw_config(route, f'{{"x": {literal}}}')

    detail = refusal(
        client, route.method, route.url(seeded_workflow), content, error="invalid_json"
    )

    assert detail.startswith("the request body is not valid JSON: ")


# JSON of the wrong shape -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [[], [{"name": "fine"}], "fine", 5, None],
    ids=["[]", "[{...}]", "str", "int", "null"],
)
@pytest.mark.parametrize("route", BODY_ROUTES, ids=ROUTE_IDS)
def test_json_that_is_not_an_object_is_a_validation_error(
    client: TestClient, seeded_workflow: int, route: BodyRoute, payload: object
) -> None:
    content = json.dumps(payload).encode()

    detail = refusal(client, route.method, route.url(seeded_workflow), content)

    assert detail.startswith("invalid request body: Expected `object`, got ")


def wrong_type_cases() -> list[Any]:
    """(route, wrong fields, the field the detail names, what it says) for every body route."""
    shared: list[tuple[dict[str, Any], str, str]] = [
        ({"name": 5}, "$.name", "Expected `str`, got `int`"),
        ({"name": None}, "$.name", "Expected `str`, got `null`"),
        ({"name": ["fine"]}, "$.name", "Expected `str`, got `array`"),
        ({"description": 7}, "$.description", "got `int`"),
        ({"config": "a=1"}, "$.config", "got `str`"),
        ({"config": []}, "$.config", "got `array`"),
        ({"config": True}, "$.config", "got `bool`"),
    ]
    specific: dict[str, list[tuple[dict[str, Any], str, str]]] = {
        "POST /workflow/start": [
            ({"auto_start": "yes"}, "$.auto_start", "Expected `bool`, got `str`"),
            ({"auto_start": 1}, "$.auto_start", "Expected `bool`, got `int`"),
        ],
        "POST /tasks": [
            ({"task_type": 5}, "$.task_type", "got `int`"),
            ({"task_type": "nope"}, "$.task_type", "Invalid enum value 'nope'"),
            ({"max_retries": "1"}, "$.max_retries", "Expected `int`, got `str`"),
            ({"max_retries": 11}, "$.max_retries", "<= 10"),
            ({"workflow_id": "1"}, "$.workflow_id", "got `str`"),
        ],
    }
    cases = []
    for route in BODY_ROUTES:
        for fields, field, reason in shared + specific.get(str(route), []):
            label = f"{route} {json.dumps(fields)}"
            cases.append(pytest.param(route, fields, field, reason, id=label))
    return cases


@pytest.mark.parametrize(("route", "fields", "field", "reason"), wrong_type_cases())
def test_a_field_of_the_wrong_type_is_a_validation_error_naming_it(
    client: TestClient,
    seeded_workflow: int,
    route: BodyRoute,
    fields: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    content = json.dumps(route.body(**fields)).encode()

    detail = refusal(client, route.method, route.url(seeded_workflow), content)

    assert detail.startswith("invalid request body: ")
    assert field in detail
    assert reason in detail


@pytest.mark.parametrize(
    "route", [r for r in BODY_ROUTES if r.requires_name], ids=lambda route: str(route)
)
def test_a_missing_name_is_a_validation_error_naming_it(
    client: TestClient, seeded_workflow: int, route: BodyRoute
) -> None:
    body = {key: value for key, value in route.valid.items() if key != "name"}

    detail = refusal(client, route.method, route.url(seeded_workflow), json.dumps(body).encode())

    assert detail == "invalid request body: Object missing required field `name`"


@pytest.mark.parametrize(
    ("name", "reason"),
    [("x" * 256, "Expected `str` of length <= 255"), ("", "Expected `str` of length >= 1")],
    ids=["256-chars", "empty"],
)
@pytest.mark.parametrize("route", BODY_ROUTES, ids=ROUTE_IDS)
def test_a_name_outside_1_to_255_characters_is_a_validation_error_naming_it(
    client: TestClient, seeded_workflow: int, route: BodyRoute, name: str, reason: str
) -> None:
    content = json.dumps(route.body(name=name)).encode()

    detail = refusal(client, route.method, route.url(seeded_workflow), content)

    assert detail == f"invalid request body: {reason} - at `$.name`"


@pytest.mark.parametrize("route", BODY_ROUTES, ids=ROUTE_IDS)
def test_unknown_fields_are_ignored_and_not_stored(
    client: TestClient, seeded_workflow: int, route: BodyRoute
) -> None:
    body = route.body(priority_level_x="urgent", nested_extra_y={"deep": True})

    response = client.request(route.method, route.url(seeded_workflow), json=body)

    assert response.status_code == route.success, response.text
    assert response.json()["name"] == "fine"
    log = client.get("/events", params={"limit": 1000})
    assert log.status_code == 200, log.text
    everything = json.dumps([observable_state(client), response.json()]) + log.text
    assert "priority_level_x" not in everything
    assert "nested_extra_y" not in everything
    assert "urgent" not in everything


# Free-form config that later readers would choke on ----------------------------------------------


@pytest.mark.parametrize("depth", [40, 5000])
@pytest.mark.parametrize("route", BODY_ROUTES, ids=ROUTE_IDS)
def test_config_nested_too_deep_is_a_validation_error(
    client: TestClient, seeded_workflow: int, route: BodyRoute, depth: int
) -> None:
    content = with_raw_config(route, nested(depth))

    detail = refusal(client, route.method, route.url(seeded_workflow), content)

    assert detail.endswith(f"is nested deeper than {MAX_JSON_DEPTH} levels")
    if depth < 100:  # shallow enough to be walked: the detail points into config
        assert detail.startswith("$.config.a.a.a")


@pytest.mark.parametrize("route", BODY_ROUTES, ids=ROUTE_IDS)
def test_config_nested_to_the_limit_is_accepted(
    client: TestClient, seeded_workflow: int, route: BodyRoute
) -> None:
    content = with_raw_config(route, nested(MAX_JSON_DEPTH))

    response = client.request(route.method, route.url(seeded_workflow), content=content)

    assert response.status_code == route.success, response.text


@pytest.mark.parametrize(
    "number",
    ["9" * 400, "-" + "9" * 400, str(2**63), str(-(2**63) - 1)],
    ids=["400", "-400", "2**63", "-2**63-1"],
)
@pytest.mark.parametrize("route", BODY_ROUTES, ids=ROUTE_IDS)
def test_an_integer_past_64_bits_in_config_is_a_validation_error(
    client: TestClient, seeded_workflow: int, route: BodyRoute, number: str
) -> None:
    content = with_raw_config(route, f'{{"x": [{number}]}}')

    detail = refusal(client, route.method, route.url(seeded_workflow), content)

    assert detail == "$.config.x[...] is an integer that does not fit in 64 bits"


@pytest.mark.parametrize("route", BODY_ROUTES, ids=ROUTE_IDS)
def test_a_number_too_large_for_a_double_in_config_is_a_validation_error(
    client: TestClient, seeded_workflow: int, route: BodyRoute
) -> None:
    content = with_raw_config(route, '{"x": 1e400}')

    detail = refusal(client, route.method, route.url(seeded_workflow), content)

    assert detail.startswith("invalid request body: Number out of range")
    assert "$.config" in detail


# Ids -------------------------------------------------------------------------------------------


def path_id_cases() -> list[Any]:
    """(method, path, id parameter, body) for every endpoint with an id in its path."""
    cases = []
    for endpoint in ENDPOINTS:
        for name in endpoint.path_params:
            body = b'{"name": "fine"}' if endpoint.body is not None else None
            label = f"{endpoint.method} {endpoint.path}"
            cases.append(pytest.param(endpoint.method, endpoint.path, name, body, id=label))
    return cases


@pytest.mark.parametrize("raw_id", BAD_IDS)
@pytest.mark.parametrize(("method", "path", "name", "body"), path_id_cases())
def test_a_path_id_that_is_not_a_positive_64_bit_integer_is_a_validation_error(
    client: TestClient,
    seeded_workflow: int,
    method: str,
    path: str,
    name: str,
    body: bytes | None,
    raw_id: str,
) -> None:
    url = path.replace("{" + name + "}", raw_id)

    detail = refusal(client, method, url, body)

    assert detail == f"{name} must be a positive integer below 2**63, got {raw_id!r}"


@pytest.mark.parametrize(
    "workflow_id",
    [0, -1, "abc", 1.5, 2**63, 2**64, "00001", "1"],
    ids=["0", "-1", "abc", "1.5", "2**63", "2**64", "str-00001", "str-1"],
)
def test_a_task_workflow_id_that_is_not_a_positive_64_bit_integer_is_a_validation_error(
    client: TestClient, seeded_workflow: int, workflow_id: object
) -> None:
    body = {"name": "fine", "task_type": "compute", "workflow_id": workflow_id}

    detail = refusal(client, "POST", "/tasks", json.dumps(body).encode())

    assert detail.startswith("invalid request body: ")
    assert "at `$.workflow_id`" in detail


def test_a_task_workflow_id_with_leading_zeros_is_invalid_json(
    client: TestClient, seeded_workflow: int
) -> None:
    content = b'{"name": "fine", "task_type": "compute", "workflow_id": 00001}'

    detail = refusal(client, "POST", "/tasks", content, error="invalid_json")

    assert detail.startswith("the request body is not valid JSON: ")


# Query parameters ------------------------------------------------------------------------------


QUERY_CASES = [
    ("/workflows", "skip", "-1", "Expected `int` >= 0"),
    ("/workflows", "skip", "abc", "Expected `int`, got `str`"),
    ("/workflows", "skip", str(2**63), "Expected `int` <= 9223372036854775807"),
    ("/workflows", "limit", "0", "Expected `int` >= 1"),
    ("/workflows", "limit", "1001", "Expected `int` <= 1000"),
    ("/workflows", "limit", "1.5", "Expected `int`, got `str`"),
    ("/workflows", "limit", "", "Expected `int`, got `str`"),
    ("/workflows", "status_filter", "nope", "must be one of INIT, PREPARE"),
    ("/workflows", "status_filter", "INITIAL", "must be one of INIT, PREPARE"),
    ("/tasks", "skip", "-1", "Expected `int` >= 0"),
    ("/tasks", "limit", "0", "Expected `int` >= 1"),
    ("/tasks", "limit", "x", "Expected `int`, got `str`"),
    ("/tasks", "status", "nope", "must be one of pending, running"),
    ("/tasks", "status_filter", "done", "must be one of pending, running"),
    *[("/tasks", "workflow_id", raw, "") for raw in BAD_IDS],
]


@pytest.mark.parametrize(
    ("path", "name", "value", "reason"),
    QUERY_CASES,
    ids=[f"{path}?{name}={value}" for path, name, value, _ in QUERY_CASES],
)
def test_a_bad_query_parameter_is_a_validation_error_naming_it(
    client: TestClient, seeded_workflow: int, path: str, name: str, value: str, reason: str
) -> None:
    detail = refusal(client, "GET", f"{path}?{name}={value}")

    assert name in detail
    assert reason in detail


# The body limit ---------------------------------------------------------------------------------

LIMIT = 1024
SMALL_LIMIT = Settings(
    database_url="memory://",
    task_time_scale=0,
    log_file="",
    max_body_bytes=LIMIT,
    allowed_hosts=TESTCLIENT_HOSTS,
)


def oversized(route: BodyRoute) -> bytes:
    """A valid body just over the limit."""
    content = json.dumps(route.body(description="d" * LIMIT)).encode()
    assert len(content) > LIMIT
    return content


def in_chunks(content: bytes, size: int = 100) -> Iterator[bytes]:
    """The body as a stream of chunks, so the client sends it without a Content-Length."""
    for start in range(0, len(content), size):
        yield content[start : start + size]


@pytest.mark.parametrize("settings", [SMALL_LIMIT], ids=[f"max_body_bytes={LIMIT}"])
@pytest.mark.parametrize("route", BODY_ROUTES, ids=ROUTE_IDS)
def test_a_body_over_the_limit_with_a_content_length_is_payload_too_large(
    client: TestClient, seeded_workflow: int, route: BodyRoute, settings: Settings
) -> None:
    detail = refusal(
        client,
        route.method,
        route.url(seeded_workflow),
        oversized(route),
        status=413,
        error="payload_too_large",
    )

    assert detail == f"the request body is over the limit of {LIMIT} bytes"


@pytest.mark.parametrize("settings", [SMALL_LIMIT], ids=[f"max_body_bytes={LIMIT}"])
@pytest.mark.parametrize("route", BODY_ROUTES, ids=ROUTE_IDS)
def test_a_chunked_body_over_the_limit_is_payload_too_large(
    client: TestClient, seeded_workflow: int, route: BodyRoute, settings: Settings
) -> None:
    before = observable_state(client)

    response = client.request(
        route.method, route.url(seeded_workflow), content=in_chunks(oversized(route)), headers=JSON
    )

    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413, response.text
    assert error_body(response) == {
        "error": "payload_too_large",
        "detail": f"the request body is over the limit of {LIMIT} bytes",
    }
    assert observable_state(client) == before


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("settings", [SMALL_LIMIT], ids=[f"max_body_bytes={LIMIT}"])
def test_a_body_of_exactly_the_limit_is_accepted(
    client: TestClient, settings: Settings, chunked: bool
) -> None:
    frame = json.dumps({"name": "edge", "description": ""}).encode()
    content = json.dumps({"name": "edge", "description": "d" * (LIMIT - len(frame))}).encode()
    assert len(content) == LIMIT

    response = client.post("/workflows", content=in_chunks(content) if chunked else content)

    assert response.status_code == 201, response.text


# Routes and methods -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("POST", "/workflow"),
        ("GET", "/workflows/1/nope"),
        ("POST", "/tasks/1/run"),
        ("GET", "/docs/static/nope.js"),
        ("GET", "/openapi.yaml"),
        ("DELETE", "/workflows/1/tasks/1"),
    ],
)
def test_an_unknown_route_is_a_json_404(
    client: TestClient, seeded_workflow: int, method: str, path: str
) -> None:
    detail = refusal(client, method, path, status=404, error="not_found")

    assert detail == f"no route matches {method} {path}"


def wrong_method_cases() -> list[Any]:
    """(method, url, allowed methods) for every path and every method it does not serve.

    A method that another path template serves for the same URL is left out: GET /workflow/start
    is GET /workflow/{workflow_id} with the id "start" (see the test after this one).
    """
    served: dict[str, set[str]] = {}
    for endpoint in ENDPOINTS:
        served.setdefault(endpoint.path, set()).add(endpoint.method)
    cases = []
    for path, methods in served.items():
        allowed = methods | ({"HEAD"} if "GET" in methods else set())
        url = re.sub(r"{\w+}", "1", path)
        for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - methods):
            if not any(
                method in other_methods and re.fullmatch(re.sub(r"{\w+}", "[^/]+", other), url)
                for other, other_methods in served.items()
            ):
                cases.append(pytest.param(method, url, allowed, id=f"{method} {path}"))
    return cases


@pytest.mark.parametrize(("method", "url", "allowed"), wrong_method_cases())
def test_a_method_the_path_does_not_serve_is_a_json_405_with_an_allow_header(
    client: TestClient, seeded_workflow: int, method: str, url: str, allowed: set[str]
) -> None:
    before = observable_state(client)

    response = client.request(method, url, content=b"{}", headers=JSON)

    assert response.status_code == 405
    assert error_body(response) == {
        "error": "method_not_allowed",
        "detail": f"{method} is not allowed on {url}",
    }
    assert {name.strip() for name in response.headers["allow"].split(",")} == allowed
    assert observable_state(client) == before


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_fixed_path_segment_where_an_id_fits_is_read_as_an_id(
    client: TestClient, seeded_workflow: int, method: str
) -> None:
    detail = refusal(client, method, "/workflow/start")

    assert detail == "workflow_id must be a positive integer below 2**63, got 'start'"
