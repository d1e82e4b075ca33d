"""Without a token, a web page in a browser on this machine still cannot drive the API.

Browsers mark a page's requests with `Origin` and `Sec-Fetch-Site`; these tests send the headers
a browser would for each attack (a form post, a `no-cors` fetch with or without a body, a page
reached through a rebound DNS name) and check that it is refused and that nothing changed. The
same requests from curl-like clients, which send neither header, keep working.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from orchestrator.http.app import create_app
from orchestrator.settings import Settings

EVIL = "http://evil.example"
#: What a browser sends with a request from a page of another site.
CROSS_SITE = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
FORM_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x")


def forbidden(origin: str) -> dict[str, str]:
    return {
        "error": "forbidden_origin",
        "detail": f"a page at {origin!r} may not change anything here (list its origin in "
        "CORS_ORIGINS to allow it)",
    }


def unsupported(content_type: str) -> dict[str, str]:
    return {
        "error": "unsupported_media_type",
        "detail": "the request body must be JSON: send 'Content-Type: application/json', "
        f"not {content_type!r}",
    }


@pytest.fixture
def manual(start: Callable[[dict[str, Any]], int]) -> int:
    """A workflow waiting in INIT for `next`."""
    return start({"name": "manual", "auto_start": False})


def status_of(client: TestClient, workflow_id: int) -> str:
    status: str = client.get(f"/workflow/{workflow_id}").json()["status"]
    return status


# Cross-site requests -----------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", FORM_TYPES)
def test_a_cross_site_form_post_starts_nothing(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/workflow/start",
        content=b'{"name": "from a web page"}',
        headers={**CROSS_SITE, "Content-Type": content_type},
    )

    assert response.status_code == 403
    assert response.json() == forbidden(EVIL)
    assert client.get("/workflows").json() == []


@pytest.mark.parametrize("path", ["/workflow/{id}/cancel", "/execution/workflows/{id}/cancel"])
def test_a_cross_site_bodiless_post_cancels_nothing(
    client: TestClient, manual: int, path: str
) -> None:
    url = path.format(id=manual)
    for headers in (CROSS_SITE, {"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}):
        response = client.post(url, headers=headers)
        assert response.status_code == 403, headers
        assert response.json()["error"] == "forbidden_origin"
    assert status_of(client, manual) == "INIT"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "null"},  # sandboxed frames, file: pages, no-referrer
        {"Origin": "http://testserver:8080"},  # the same host on another port: another origin
        {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"},
        {"Origin": "http://testserver", "Sec-Fetch-Site": "same-site"},  # a lying mix
    ],
)
def test_other_origins_and_sites_of_this_host_are_refused_too(
    client: TestClient, manual: int, headers: dict[str, str]
) -> None:
    assert client.post(f"/workflow/{manual}/cancel", headers=headers).status_code == 403
    assert client.delete(f"/workflows/{manual}", headers=headers).status_code == 403
    assert status_of(client, manual) == "INIT"


def test_a_page_of_this_origin_may_post(client: TestClient) -> None:
    # What Swagger UI's "Try it out" sends from /docs.
    page = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    response = client.post("/workflow/start", json={"name": "from /docs"}, headers=page)

    assert response.status_code == 201, response.text


def test_a_cors_origin_may_post(settings: Settings) -> None:
    listed = dataclasses.replace(settings, cors_origins=("https://app.example.com",))
    headers = {"Origin": "https://app.example.com", "Sec-Fetch-Site": "cross-site"}
    with TestClient(create_app(listed)) as client:
        response = client.post("/workflow/start", json={"name": "app"}, headers=headers)
        refused = client.post("/workflow/start", json={"name": "x"}, headers=CROSS_SITE)

    assert response.status_code == 201, response.text
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    assert refused.json() == forbidden(EVIL)


def test_a_cross_site_read_is_answered_but_unreadable_by_the_page(client: TestClient) -> None:
    # The browser keeps the answer from the page: no CORS header allows it to read it.
    response = client.get("/workflows", headers=CROSS_SITE)

    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


# Media types -------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [*FORM_TYPES, "application/xml", "json", "text/json"])
def test_a_body_that_is_not_declared_json_is_a_415(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/workflow/start",
        content=b'{"name": "typed wrongly"}',
        headers={"Content-Type": content_type},
    )

    assert response.status_code == 415
    assert response.json() == unsupported(content_type)
    assert client.get("/workflows").json() == []


def test_a_bodiless_post_with_a_form_type_is_a_415(client: TestClient, manual: int) -> None:
    response = client.post(f"/workflow/{manual}/cancel", headers={"Content-Type": "text/plain"})

    assert response.status_code == 415
    assert status_of(client, manual) == "INIT"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/merge-patch+json",
        "application/vnd.orchestrator+json; version=1",
    ],
)
def test_json_bodies_are_accepted_with_any_json_type(client: TestClient, content_type: str) -> None:
    response = client.post(
        "/workflow/start", content=b'{"name": "json"}', headers={"Content-Type": content_type}
    )

    assert response.status_code == 201, response.text


def test_a_body_without_content_type_is_read_as_json_as_the_original_did(
    client: TestClient,
) -> None:
    response = client.post("/workflow/start", content=b'{"name": "untyped"}')

    assert response.status_code == 201, response.text


def test_a_curl_style_bodiless_post_works(client: TestClient, manual: int) -> None:
    # curl -X POST .../next: no Content-Type, no Origin, no body.
    response = client.post(f"/workflow/{manual}/next")

    assert response.status_code == 200, response.text
    assert response.json()["current_state"] == "PREPARE"


def test_a_bodiless_post_declared_json_works(client: TestClient, manual: int) -> None:
    # What the demo and many clients send: the JSON type on every request.
    response = client.post(
        f"/workflow/{manual}/cancel", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 200, response.text


# The Host header ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8000",
        "localhost.evil.example",
        "evil.example.",
        "",
        "a:b:c",
        "[fe80::1%evil.com]",  # an IPv6 zone id is no part of a Host header
        "[fe80::1%25evil.com]:8000",
    ],
)
def test_a_host_that_is_not_allowed_is_a_400_in_json(client: TestClient, host: str) -> None:
    response = client.get("/events", headers={"Host": host})

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": "bad_host",
        "detail": f"the Host header ({host!r}) is not a name of this server; if clients reach "
        "it under that name, add the name to ALLOWED_HOSTS",
    }


def test_a_rebound_name_cannot_change_anything_either(client: TestClient, manual: int) -> None:
    rebound = {"Host": "evil.example:8000", "Origin": "http://evil.example:8000"}
    response = client.post(f"/workflow/{manual}/cancel", headers=rebound)

    assert response.status_code == 400
    assert status_of(client, manual) == "INIT"


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost.:80", "LOCALHOST:1234", "127.0.0.1:8000", "[::1]:8000", "10.1.2.3"],
)
def test_allowed_names_on_any_port_and_ip_addresses_are_answered(
    client: TestClient, host: str
) -> None:
    assert client.get("/workflows", headers={"Host": host}).status_code == 200


def test_a_host_entry_with_a_port_allows_that_port_only(settings: Settings) -> None:
    pinned = dataclasses.replace(settings, allowed_hosts=("api.example:8443",))
    with TestClient(create_app(pinned), base_url="http://api.example:8443") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health", headers={"Host": "api.example:8444"}).status_code == 400
        assert client.get("/health", headers={"Host": "api.example"}).status_code == 400


def test_the_production_default_refuses_testclients_name() -> None:
    with TestClient(create_app(Settings(database_url="memory://", log_file=""))) as client:
        assert client.get("/health").json()["error"] == "bad_host"
        assert client.get("/health", headers={"Host": "localhost:8000"}).status_code == 200
