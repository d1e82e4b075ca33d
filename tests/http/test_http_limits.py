"""Bounds on what valid requests may cost: config size and entries, header size, how long a body
may take, an abandoned upload, and list answers cut short at MAX_RESPONSE_BYTES."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import MutableMapping
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from orchestrator.settings import Settings

MAX_CONFIG_BYTES = 400
MAX_CONFIG_KEYS = 10
MAX_RESPONSE_BYTES = 6000


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Small bounds, so tests reach them with small bodies."""
    return dataclasses.replace(
        settings,
        max_config_bytes=MAX_CONFIG_BYTES,
        max_config_keys=MAX_CONFIG_KEYS,
        max_response_bytes=MAX_RESPONSE_BYTES,
        max_header_bytes=2048,
        client_timeout_seconds=0.3,
    )


def head_position(client: TestClient) -> int:
    """The log's last position, to show that nothing was recorded."""
    position: int = client.get("/health").json()["log_position"]
    return position


@pytest.mark.parametrize(
    ("path", "method", "extra"),
    [
        ("/workflow/start", "POST", {"name": "w"}),
        ("/workflows", "POST", {"name": "w"}),
        ("/tasks", "POST", {"name": "t", "task_type": "compute"}),
    ],
)
def test_a_config_over_max_config_bytes_is_refused_before_anything_is_recorded(
    client: TestClient, path: str, method: str, extra: dict[str, Any]
) -> None:
    before = head_position(client)
    config = {"blob": "x" * MAX_CONFIG_BYTES}

    response = client.request(method, path, json={**extra, "config": config})

    assert response.status_code == 422
    size = len(json.dumps(config, separators=(",", ":")))
    assert response.json() == {
        "error": "validation_error",
        "detail": f"$.config is {size} bytes as JSON, over the limit of {MAX_CONFIG_BYTES} "
        "bytes (MAX_CONFIG_BYTES)",
    }
    assert head_position(client) == before


@pytest.mark.parametrize(
    "config",
    [
        {f"k{i}": i for i in range(MAX_CONFIG_KEYS + 1)},
        {"a": {"b": {f"k{i}": i for i in range(MAX_CONFIG_KEYS)}}},
        {"items": list(range(MAX_CONFIG_KEYS))},
        {"deep": [[{}] for _ in range(6)]},
    ],
    ids=["flat", "nested", "array items", "arrays of objects"],
)
def test_a_config_with_more_than_max_config_keys_entries_at_any_depth_is_refused(
    client: TestClient, config: dict[str, Any]
) -> None:
    before = head_position(client)

    response = client.post("/workflow/start", json={"name": "w", "config": config})

    assert response.status_code == 422
    assert response.json() == {
        "error": "validation_error",
        "detail": f"$.config has more than {MAX_CONFIG_KEYS} keys and array items at all "
        "depths (MAX_CONFIG_KEYS)",
    }
    assert head_position(client) == before


def test_a_config_at_the_bounds_is_accepted_and_an_edit_past_them_refused(
    client: TestClient,
) -> None:
    config = {f"k{i}": "v" * 20 for i in range(MAX_CONFIG_KEYS)}
    assert len(json.dumps(config, separators=(",", ":"))) <= MAX_CONFIG_BYTES

    created = client.post("/workflows", json={"name": "w", "config": config})
    assert created.status_code == 201, created.text
    workflow_id = created.json()["workflow_id"]

    edited = client.put(f"/workflows/{workflow_id}", json={"config": {**config, "one": 1}})
    assert edited.status_code == 422
    assert "MAX_CONFIG_KEYS" in edited.json()["detail"]
    assert client.get(f"/workflows/{workflow_id}").json()["config"] == config


def test_headers_over_max_header_bytes_are_refused_with_431(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Padding": "p" * 3000})

    assert response.status_code == 431
    assert response.headers["connection"] == "close"
    body = response.json()
    assert body["error"] == "headers_too_large"
    assert body["detail"].endswith("over the limit of 2048 bytes (MAX_HEADER_BYTES)")
    assert client.get("/health", headers={"X-Padding": "p" * 1500}).status_code == 200


async def call(
    app: Starlette, body_parts: list[bytes | None], *, finished: bool = True
) -> tuple[int, dict[str, str], Any]:
    """Send POST /workflow/start straight to the ASGI app, body in parts (None is a pause of a
    second); unless `finished`, the client goes away after the last part."""
    parts = list(body_parts)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if not parts:
            return {"type": "http.disconnect"}
        part = parts.pop(0)
        if part is None:
            await asyncio.sleep(1.0)
            return {"type": "http.request", "body": b"", "more_body": True}
        return {"type": "http.request", "body": part, "more_body": bool(parts) or not finished}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/workflow/start",
        "raw_path": b"/workflow/start",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], headers, json.loads(body) if body else None


def test_a_body_slower_than_client_timeout_seconds_is_answered_408_and_closed(
    client: TestClient, app: Starlette
) -> None:
    before = head_position(client)
    assert client.portal is not None

    status, headers, body = client.portal.call(call, app, [b'{"name": ', None, b'"w"}'])

    assert status == 408
    assert headers["connection"] == "close"
    assert body == {
        "error": "request_timeout",
        "detail": "the request body did not arrive within 0.3 s (CLIENT_TIMEOUT_SECONDS)",
    }
    assert head_position(client) == before


def test_an_abandoned_upload_is_logged_quietly_and_records_nothing(
    client: TestClient, app: Starlette, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = head_position(client)
    assert client.portal is not None

    status, _, _ = client.portal.call(lambda: call(app, [b'{"name": "half'], finished=False))

    assert status == 400  # nobody reads it

    assert head_position(client) == before
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "client left before sending all of POST /workflow/start" in caplog.messages


def make_workflows(client: TestClient, count: int) -> list[int]:
    """`count` workflows with configs near the bound (each read is about 900 bytes)."""
    ids = []
    for number in range(count):
        config = {"padding": "p" * (MAX_CONFIG_BYTES - 20)}
        response = client.post("/workflows", json={"name": f"w{number}", "config": config})
        assert response.status_code == 201, response.text
        ids.append(response.json()["workflow_id"])
    return ids


def follow_pages(client: TestClient, url: str) -> list[dict[str, Any]]:
    """Every item, following Link headers; each answer within the bound and a JSON array."""
    items: list[dict[str, Any]] = []
    for _ in range(50):
        response = client.get(url)
        assert response.status_code == 200
        assert len(response.content) <= MAX_RESPONSE_BYTES
        page = response.json()
        assert isinstance(page, list)
        items += page
        if response.headers.get("x-truncated") != "true":
            assert "link" not in response.headers
            return items
        assert response.headers["x-item-count"] == str(len(page))
        link = response.headers["link"]
        assert link.endswith('>; rel="next"')
        url = link[1 : link.index(">")]
    raise AssertionError("the pages never ended")


def test_a_list_of_workflows_stops_before_max_response_bytes_and_links_the_rest(
    client: TestClient,
) -> None:
    ids = make_workflows(client, 20)

    first = client.get("/workflows?limit=1000&status_filter=INIT")
    assert first.headers["x-truncated"] == "true"
    assert "status_filter=INIT" in first.headers["link"]
    listed = follow_pages(client, "/workflows?limit=1000&status_filter=INIT")

    assert [item["workflow_id"] for item in listed] == ids
    assert [w["workflow_id"] for w in client.get("/workflows?limit=3").json()] == ids[:3]


def test_lists_of_tasks_stop_before_max_response_bytes(client: TestClient) -> None:
    [workflow_id] = make_workflows(client, 1)
    config = {"padding": "p" * (MAX_CONFIG_BYTES - 40), "iterations": 1}
    ids = []
    for number in range(15):
        body = {"name": f"t{number}", "task_type": "compute", "config": config}
        response = client.post("/tasks", json={**body, "workflow_id": workflow_id})
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])

    assert [t["id"] for t in follow_pages(client, "/tasks?limit=1000")] == ids
    attached = follow_pages(client, f"/workflows/{workflow_id}/tasks")
    assert [t["id"] for t in attached] == ids


def test_pages_of_events_stop_before_max_response_bytes_and_say_where_to_go_on(
    client: TestClient,
) -> None:
    make_workflows(client, 12)
    head = head_position(client)

    response = client.get("/events?limit=1000")
    page = response.json()

    assert len(response.content) <= MAX_RESPONSE_BYTES
    assert response.headers["x-truncated"] == "true"
    assert set(page) == {"events", "next_after", "head"}
    assert page["next_after"] == page["events"][-1]["position"] < head
    rest_url = f"/events?limit=1000&after={page['next_after']}"
    assert response.headers["link"] == f'<{rest_url}>; rel="next"'
    rest = client.get(rest_url).json()
    positions = [e["position"] for e in page["events"] + rest["events"]]
    assert positions == list(range(1, head + 1))


def test_a_workflows_events_stop_before_max_response_bytes(client: TestClient) -> None:
    [workflow_id] = make_workflows(client, 1)
    for number in range(10):
        config = {"padding": "q" * (MAX_CONFIG_BYTES - 20), "n": number}
        assert client.put(f"/workflows/{workflow_id}", json={"config": config}).status_code == 200

    response = client.get(f"/workflow/{workflow_id}/events")

    assert len(response.content) <= MAX_RESPONSE_BYTES
    assert response.headers["x-truncated"] == "true"
    events = response.json()
    last = events[-1]["position"]
    link = f'</events?stream=workflow-{workflow_id}&after={last}>; rel="next"'
    assert response.headers["link"] == link
    rest = client.get(f"/events?stream=workflow-{workflow_id}&after={last}").json()["events"]
    assert [e["version"] for e in events + rest] == list(range(1, 12))
