"""API_TOKEN: every route but the public ones answers 401 without a valid bearer token.

The route walk reads the app's own route table (routes and mounts, every method each accepts,
plus one it does not), so a route added later without protection fails here.
"""

from __future__ import annotations

import dataclasses
import hmac
import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from orchestrator.http.app import create_app, runtime_of
from orchestrator.settings import Settings
from tests.settings_for_tests import TESTCLIENT_HOSTS

TOKENS = ("first-token-0123456789", "second-token-abcdefghij", "third-token-ABCDEFGHIJ")
MISSING = {
    "error": "unauthorized",
    "detail": "this server needs an API token: send the header 'Authorization: Bearer <token>' "
    "with one of the tokens in API_TOKEN",
}
WRONG = {
    "error": "unauthorized",
    "detail": "the bearer token is not one of the tokens in API_TOKEN",
}
CHALLENGE = 'Bearer realm="orchestrator"'
#: Everything answered without a token: /health, the documentation and the dashboard's page and
#: files (see http/auth.py).
PUBLIC = {
    "/health",
    "/openapi.json",
    "/docs",
    "/redoc",
    "/docs/static",
    "/redoc/static",
    "/ui",
    "/ui/static",
}


@pytest.fixture
def settings() -> Settings:
    """The conftest's settings with three tokens."""
    return Settings(
        database_url="memory://",
        task_time_scale=0,
        log_file="",
        allowed_hosts=TESTCLIENT_HOSTS,
        api_tokens=TOKENS,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def requests_of(app: Starlette) -> Iterator[tuple[str, str, str]]:
    """(method, url, route path) for every method of every route and mount of the app."""
    for route in app.routes:
        if isinstance(route, Route):
            url = re.sub(r"{\w+}", "1", route.path)
            methods = [*sorted(route.methods or ()), "PATCH"]
            for method in methods:
                yield method, url, route.path
        elif isinstance(route, Mount):
            # A mount answers every path below it; ask for a file that exists and one that not.
            for url in (f"{route.path}/swagger-ui.css", f"{route.path}/nothing"):
                for method in ("GET", "HEAD", "POST"):
                    yield method, url, route.path
        else:  # pragma: no cover - the walk must know every kind of route
            pytest.fail(f"unknown route kind {route!r}")


def streams_end_at_once(client: TestClient, app: Starlette) -> None:
    """Make /events/stream answer and end (as at shutdown) instead of streaming forever."""
    assert client.portal is not None
    client.portal.call(runtime_of(app).stopping.set)


def test_every_route_but_health_and_the_docs_needs_the_token(app: Starlette) -> None:
    reachable: set[str] = set()
    with TestClient(app) as client:
        streams_end_at_once(client, app)  # so a walk that gets past the check cannot hang
        for method, url, path in requests_of(app):
            for variant in (url, url + "/"):
                response = client.request(method, variant)
                if response.status_code != 401:
                    reachable.add(path)
                    continue
                if method != "HEAD":  # a HEAD answer has no body
                    assert response.json() == MISSING, f"{method} {variant}"
                assert response.headers["www-authenticate"] == CHALLENGE
    assert reachable == PUBLIC
    assert len(list(requests_of(app))) > 60  # the walk saw the whole table


def test_every_route_answers_a_valid_token(app: Starlette) -> None:
    with TestClient(app, headers=bearer(TOKENS[1])) as client:
        streams_end_at_once(client, app)
        for method, url, _ in requests_of(app):
            response = client.request(method, url)
            assert response.status_code != 401, f"{method} {url}: {response.text}"


def test_each_of_several_tokens_opens_the_api(client: TestClient) -> None:
    for token in TOKENS:
        assert client.get("/workflows", headers=bearer(token)).status_code == 200
    assert client.get("/workflows", headers={"Authorization": f"bearer {TOKENS[2]}"}).json() == []


@pytest.mark.parametrize(
    "presented",
    [
        TOKENS[0][:-1],  # a prefix
        TOKENS[0] + "x",  # a token and more
        TOKENS[0].upper(),
        TOKENS[0] + "," + TOKENS[1],  # the setting's own syntax is not a token
        "not-a-token-at-all-xxxxxxxx",
    ],
)
def test_anything_but_a_whole_token_is_refused_without_being_echoed(
    client: TestClient, presented: str
) -> None:
    response = client.post("/workflow/start", json={"name": "x"}, headers=bearer(presented))

    assert response.status_code == 401
    assert response.json() == WRONG
    assert response.headers["www-authenticate"] == f'{CHALLENGE}, error="invalid_token"'
    assert presented not in response.text
    assert client.get("/workflows", headers=bearer(TOKENS[0])).json() == []


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer   ", f"Basic {TOKENS[0]}", TOKENS[0]]
)
def test_no_bearer_token_is_a_401_asking_for_one(
    client: TestClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/execution/stats", headers=headers)

    assert response.status_code == 401
    assert response.json() == MISSING
    assert response.headers["www-authenticate"] == CHALLENGE


def test_the_token_is_compared_with_every_token_whichever_matches(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[Any, Any]] = []
    compare_digest = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return compare_digest(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module auth.py calls it through
    for presented in (TOKENS[0], TOKENS[2], "not-a-token-at-all-xxxxxxxx"):
        compared.clear()
        client.get("/", headers=bearer(presented))
        # Every token, every time, over digests of one length: no early exit to time.
        assert len(compared) == len(TOKENS)
        assert {len(a) for a, _ in compared} | {len(b) for _, b in compared} == {32}


def test_an_idempotency_key_is_kept_per_token(client: TestClient) -> None:
    key = {"Idempotency-Key": "same-key"}

    first = client.post("/workflows", json={"name": "a"}, headers={**key, **bearer(TOKENS[0])})
    other = client.post("/workflows", json={"name": "a"}, headers={**key, **bearer(TOKENS[1])})
    again = client.post("/workflows", json={"name": "a"}, headers={**key, **bearer(TOKENS[0])})

    assert first.status_code == other.status_code == 201
    assert "Idempotent-Replayed" not in other.headers  # not the first client's answer
    assert other.json()["workflow_id"] != first.json()["workflow_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


def test_health_needs_no_token(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/health/").status_code == 200


def test_a_public_prefix_does_not_open_a_path_that_leaves_it(client: TestClient) -> None:
    # Encoded dots, so the client sends them as they are; the server decodes them into the path.
    response = client.post("/docs/static/%2e%2e/%2e%2e/workflow/start", json={"name": "sneaky"})

    assert response.status_code in (404, 405)
    assert client.get("/workflows", headers=bearer(TOKENS[0])).json() == []


def test_the_document_declares_the_bearer_scheme_and_where_it_is_needed(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()

    assert document["components"]["securitySchemes"] == {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "One of the tokens in the server's API_TOKEN setting.",
        }
    }
    assert document["security"] == [{"bearerAuth": []}]
    assert document["paths"]["/health"]["get"]["security"] == []
    start = document["paths"]["/workflow/start"]["post"]
    assert "security" not in start
    assert start["responses"]["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }


def test_without_api_token_the_document_declares_no_scheme(settings: Settings) -> None:
    open_settings = dataclasses.replace(settings, api_tokens=())
    with TestClient(create_app(open_settings)) as client:
        document = client.get("/openapi.json").json()
        assert client.get("/execution/stats").status_code == 200

    assert "securitySchemes" not in document["components"]
    assert "security" not in document
    assert "401" not in document["paths"]["/workflow/start"]["post"]["responses"]


def test_tokens_stay_out_of_the_settings_repr(settings: Settings) -> None:
    assert not any(token in repr(settings) for token in TOKENS)


def test_a_cors_page_gets_its_preflight_and_can_read_a_401(settings: Settings) -> None:
    app_origin = "https://app.example.com"
    with_cors = dataclasses.replace(settings, cors_origins=(app_origin,))
    with TestClient(create_app(with_cors)) as client:
        preflight = client.options(
            "/workflow/start",
            headers={
                "Origin": app_origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        refused = client.post("/workflow/start", json={"name": "x"}, headers={"Origin": app_origin})

    assert preflight.status_code == 200  # preflights carry no token, by the browser's design
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == app_origin
