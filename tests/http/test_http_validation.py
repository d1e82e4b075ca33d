"""Bad input and unknown targets: every refusal is a JSON error body with a fitting status."""

from __future__ import annotations

import json

import httpx2
import pytest
from starlette.testclient import TestClient

WORKFLOW_ROUTES = [
    ("GET", ""),
    ("POST", "/next"),
    ("POST", "/retry"),
    ("POST", "/cancel"),
    ("DELETE", ""),
]
ROUTE_IDS = [f"{method} {{id}}{suffix}" for method, suffix in WORKFLOW_ROUTES]


def error_body(response: httpx2.Response) -> dict[str, str]:
    """The error body, after checking it is JSON with exactly the two documented keys."""
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body, dict)
    assert set(body) == {"error", "detail"}
    assert isinstance(body["detail"], str)
    return body


@pytest.mark.parametrize(("method", "suffix"), WORKFLOW_ROUTES, ids=ROUTE_IDS)
def test_an_unknown_workflow_id_is_not_found(client: TestClient, method: str, suffix: str) -> None:
    response = client.request(method, f"/workflow/999{suffix}")

    assert response.status_code == 404
    assert error_body(response) == {"error": "not_found", "detail": "workflow 999 does not exist"}


def test_the_largest_accepted_id_is_simply_not_found(client: TestClient) -> None:
    largest = 2**63 - 1

    response = client.get(f"/workflow/{largest}")

    assert response.status_code == 404
    assert error_body(response) == {
        "error": "not_found",
        "detail": f"workflow {largest} does not exist",
    }


@pytest.mark.parametrize("raw_id", ["0", "-1", "abc", "1.5", str(2**64), str(2**63), "01"])
@pytest.mark.parametrize(("method", "suffix"), WORKFLOW_ROUTES, ids=ROUTE_IDS)
def test_an_id_that_is_not_a_positive_integer_is_a_validation_error(
    client: TestClient, method: str, suffix: str, raw_id: str
) -> None:
    response = client.request(method, f"/workflow/{raw_id}{suffix}")

    assert response.status_code == 422
    assert error_body(response) == {
        "error": "validation_error",
        "detail": f"workflow_id must be a positive integer below 2**63, got {raw_id!r}",
    }


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b'{"name": "x",}', b"not json", b"\xff\xfe", b'{"name": "x"} trailing'],
    ids=["empty", "truncated", "trailing-comma", "bare-words", "not-utf8", "trailing-data"],
)
def test_a_body_that_is_not_json_is_invalid_json(client: TestClient, content: bytes) -> None:
    response = client.post(
        "/workflow/start", content=content, headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    body = error_body(response)
    assert body["error"] == "invalid_json"
    assert body["detail"].startswith("the request body is not valid JSON: ")


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        ({}, "`name`", "missing required field"),
        ({"description": "no name"}, "`name`", "missing required field"),
        ({"name": ""}, "$.name", "length >= 1"),
        ({"name": "x" * 256}, "$.name", "length <= 255"),
        ({"name": 5}, "$.name", "Expected `str`, got `int`"),
        ({"name": None}, "$.name", "Expected `str`, got `null`"),
        ({"name": "x", "auto_start": "yes"}, "$.auto_start", "Expected `bool`, got `str`"),
        ({"name": "x", "auto_start": 1}, "$.auto_start", "Expected `bool`, got `int`"),
        ({"name": "x", "config": []}, "$.config", "got `array`"),
        ({"name": "x", "config": "a=1"}, "$.config", "got `str`"),
        ({"name": "x", "description": 7}, "$.description", "got `int`"),
        ({"name": "x", "description": "d" * 10_001}, "$.description", "length <= 10000"),
        (["name", "x"], "`object`", "got `array`"),
        ("x", "`object`", "got `str`"),
        (None, "`object`", "got `null`"),
    ],
    ids=[
        "empty-object",
        "name-missing",
        "name-empty",
        "name-256-chars",
        "name-int",
        "name-null",
        "auto_start-string",
        "auto_start-int",
        "config-array",
        "config-string",
        "description-int",
        "description-too-long",
        "array-body",
        "string-body",
        "null-body",
    ],
)
def test_a_body_that_breaks_the_schema_is_a_validation_error_naming_the_field(
    client: TestClient, payload: object, field: str, reason: str
) -> None:
    response = client.post("/workflow/start", content=json.dumps(payload))

    assert response.status_code == 422
    body = error_body(response)
    assert body["error"] == "validation_error"
    assert body["detail"].startswith("invalid request body: ")
    assert field in body["detail"]
    assert reason in body["detail"]


def test_a_refused_body_creates_no_workflow(client: TestClient) -> None:
    assert client.post("/workflow/start", json={"name": ""}).status_code == 422
    assert client.post("/workflow/start", content=b"{").status_code == 422

    stats = client.get("/execution/stats").json()

    assert stats["workflows"]["total"] == 0


def test_a_name_of_255_characters_is_accepted(client: TestClient) -> None:
    response = client.post("/workflow/start", json={"name": "x" * 255, "auto_start": False})

    assert response.status_code == 201
    assert response.json()["name"] == "x" * 255


def test_unknown_body_fields_are_ignored(client: TestClient) -> None:
    response = client.post(
        "/workflow/start", json={"name": "x", "auto_start": False, "priority": "high"}
    )

    assert response.status_code == 201


def test_a_body_over_the_limit_is_payload_too_large(client: TestClient) -> None:
    padding = "a" * (16 * 1024 * 1024)

    response = client.post(
        "/workflow/start", json={"name": "big", "auto_start": False, "padding": padding}
    )

    assert response.status_code == 413
    assert error_body(response)["error"] == "payload_too_large"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/nope"), ("POST", "/workflow"), ("GET", "/workflow/1/history"), ("GET", "/v2")],
)
def test_an_unknown_route_is_a_json_404(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path)

    assert response.status_code == 404
    assert error_body(response) == {
        "error": "not_found",
        "detail": f"no route matches {method} {path}",
    }


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/workflow/1", {"GET"}),
        ("PATCH", "/workflow/1", {"GET"}),
        ("GET", "/workflow/1/next", {"POST"}),
        ("DELETE", "/workflow/1/retry", {"POST"}),
        ("GET", "/workflow/1/cancel", {"POST"}),
        ("PUT", "/workflow/start", {"POST"}),
        ("POST", "/execution/stats", {"GET"}),
        ("POST", "/health", {"GET"}),
    ],
)
def test_a_wrong_method_is_a_json_405_listing_the_allowed_ones(
    client: TestClient, method: str, path: str, allowed: set[str]
) -> None:
    response = client.request(method, path)

    assert response.status_code == 405
    assert error_body(response) == {
        "error": "method_not_allowed",
        "detail": f"{method} is not allowed on {path}",
    }
    assert allowed <= allow_header(response)


def test_a_405_on_a_workflow_lists_both_get_and_delete(client: TestClient) -> None:
    response = client.put("/workflow/1")

    assert response.status_code == 405
    assert {"GET", "DELETE"} <= allow_header(response)


def allow_header(response: httpx2.Response) -> set[str]:
    """The methods named by the Allow header."""
    return {name.strip() for name in response.headers["allow"].split(",")}
