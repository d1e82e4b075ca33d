"""The rules of the Idempotency-Key itself: what a valid key is, that it binds one request,
that it expires and is purged, what is not remembered, and how /openapi.json documents it."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from orchestrator.http.idempotency import IdempotentCommands
from tests.http.idempotency_helpers import (
    COMMANDS,
    cancelled,
    created_id,
    quiet,
    record_of,
)


def reused(key: str) -> dict[str, str]:
    """The 422 body for a key sent with another request than its first."""
    return {
        "error": "validation_error",
        "detail": f"Idempotency-Key {key!r} was already used for a different request (method, "
        "path or body); send a new key for a new request",
    }


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("POST", "/workflow/start", {"name": "another"}),
        ("POST", "/workflows", {"name": "once"}),
        ("DELETE", "/workflow/1", None),
        ("POST", "/workflow/1/cancel", None),
    ],
    ids=["other body", "other path", "other method", "other path, no body"],
)
def test_a_key_sent_again_with_a_different_request_is_422_and_changes_nothing(
    app: Starlette, client: TestClient, method: str, url: str, body: dict[str, Any] | None
) -> None:
    first = {"name": "once", "auto_start": False}
    assert client.post("/workflow/start", json=first, headers={"Idempotency-Key": "k"}).is_success
    head = quiet(client, app)

    response = client.request(method, url, json=body, headers={"Idempotency-Key": "k"})

    assert response.status_code == 422
    assert response.json() == reused("k")
    assert quiet(client, app) == head


@pytest.mark.parametrize(
    ("key", "got"),
    [
        ("", "an empty value"),
        ("x" * 256, "256 characters"),
        ("a\x01b", "'a\\x01b'"),
        ("tab\there", "'tab\\there'"),
        (" padded", "' padded'"),
        ("padded ", "'padded '"),
        ("line\n", "'line\\n'"),
        ("café".encode(), "'cafÃ©'"),  # UTF-8 bytes, read as Latin-1 as HTTP says
    ],
    ids=[
        "empty",
        "too long",
        "control character",
        "tab",
        "leading space",
        "trailing space",
        "newline",
        "not ASCII",
    ],
)
def test_a_bad_key_is_422_and_runs_nothing(
    app: Starlette, client: TestClient, key: str | bytes, got: str
) -> None:
    raw = key if isinstance(key, bytes) else key.encode("latin-1")
    response = client.post("/workflows", json={"name": "x"}, headers={b"Idempotency-Key": raw})

    assert response.status_code == 422
    assert response.json() == {
        "error": "validation_error",
        "detail": "Idempotency-Key must be 1 to 255 printable ASCII characters, with no space "
        f"at either end; got {got}",
    }
    assert quiet(client, app) == 0


def test_two_keys_in_one_request_are_422(app: Starlette, client: TestClient) -> None:
    headers = [("Idempotency-Key", "a"), ("Idempotency-Key", "b")]

    response = client.post("/workflows", json={"name": "x"}, headers=headers)

    assert response.status_code == 422
    assert response.json() == {
        "error": "validation_error",
        "detail": "send one Idempotency-Key header, not 2",
    }
    assert quiet(client, app) == 0


def test_a_path_with_a_trailing_slash_is_the_same_request(client: TestClient) -> None:
    headers = {"Idempotency-Key": "slash"}
    first = client.post("/workflows/", json={"name": "x"}, headers=headers)
    repeat = client.post("/workflows", json={"name": "x"}, headers=headers)

    assert first.status_code == repeat.status_code == 201
    assert repeat.content == first.content


def test_a_key_may_hold_spaces_inside(client: TestClient) -> None:
    key = "order 42 / attempt #1"
    first = client.post("/workflows", json={"name": "x"}, headers={"Idempotency-Key": key})
    repeat = client.post("/workflows", json={"name": "x"}, headers={"Idempotency-Key": key})

    assert first.status_code == repeat.status_code == 201
    assert repeat.headers["Idempotent-Replayed"] == "true"


def test_the_longest_key_is_accepted(client: TestClient) -> None:
    key = "~" * 255
    first = client.post("/workflows", json={"name": "x"}, headers={"Idempotency-Key": key})
    repeat = client.post("/workflows", json={"name": "x"}, headers={"Idempotency-Key": key})

    assert first.status_code == repeat.status_code == 201
    assert repeat.content == first.content


def test_a_key_expires_after_the_ttl_and_then_runs_the_command_again(
    app: Starlette, client: TestClient
) -> None:
    guard: IdempotentCommands = app.state.idempotency
    now = [1_000_000.0]
    guard.clock = lambda: now[0]
    body = {"name": "daily", "auto_start": False}
    headers = {"Idempotency-Key": "daily"}
    first = client.post("/workflow/start", json=body, headers=headers)

    now[0] += guard.ttl - 1
    within = client.post("/workflow/start", json=body, headers=headers)
    now[0] += 2
    after = client.post("/workflow/start", json=body, headers=headers)

    assert created_id(first) == created_id(within) == 1
    assert within.headers["Idempotent-Replayed"] == "true"
    assert created_id(after) == 2
    assert "Idempotent-Replayed" not in after.headers


def test_expired_keys_are_purged(app: Starlette, client: TestClient) -> None:
    guard: IdempotentCommands = app.state.idempotency
    now = [1_000_000.0]
    guard.clock = lambda: now[0]
    client.post("/workflows", json={"name": "a"}, headers={"Idempotency-Key": "old"})
    client.post("/workflows", json={"name": "b"}, headers={"Idempotency-Key": "recent"})
    assert record_of(client, app, "old") is not None

    now[0] += guard.ttl + 61  # past the TTL, and past the interval between purges
    client.post("/workflows", json={"name": "c"}, headers={"Idempotency-Key": "new"})

    assert record_of(client, app, "old") is None
    assert record_of(client, app, "recent") is None
    assert record_of(client, app, "new") is not None


def test_a_refused_command_leaves_no_key_and_is_decided_afresh(
    app: Starlette, client: TestClient
) -> None:
    workflow_id = cancelled(client)
    headers = {"Idempotency-Key": "too-late"}

    first = client.post(f"/workflow/{workflow_id}/next", headers=headers)
    again = client.post(f"/workflow/{workflow_id}/next", headers=headers)

    assert first.status_code == again.status_code == 409
    assert record_of(client, app, "too-late") is None
    assert "Idempotent-Replayed" not in again.headers


def test_the_events_of_a_keyed_command_name_its_key(client: TestClient) -> None:
    headers = {"Idempotency-Key": "traced"}
    workflow_id = created_id(client.post("/workflows", json={"name": "t"}, headers=headers))

    events = client.get(f"/workflow/{workflow_id}/events").json()

    assert [e["metadata"].get("idempotency_key") for e in events] == ["traced"]


def test_every_command_operation_documents_the_key_and_no_read_does(client: TestClient) -> None:
    document = client.get("/openapi.json").json()

    keyed = {
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))
    }

    assert sorted(keyed) == COMMANDS
    parameter = document["paths"]["/workflow/start"]["post"]["parameters"][0]
    assert (parameter["in"], parameter["required"]) == ("header", False)
    assert parameter["schema"]["maxLength"] == 255
