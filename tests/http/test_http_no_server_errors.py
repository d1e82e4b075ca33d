"""No 500 where the request or the machine is at fault: a Last-Event-ID that is not a position is a
422 naming the header, and a command whose read models lag answers its recorded outcome.

A command is recorded once its append commits; the wait for the read models after that is only
for read-your-writes. Before, a read model that did not catch up in 10 s turned a recorded
command into a 500, and the client, told it failed, sent it again: a second workflow.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from orchestrator.http import responses
from orchestrator.http.app import runtime_of
from orchestrator.projections.models import Row
from tests.http.raw_asgi import RawAnswer, call

HOST = (b"host", b"localhost")
DETAIL = "Last-Event-ID must be a log position (0 to 2**63-1 in ASCII digits), got {!r}"


def stream(client: TestClient, app: Starlette, last_event_id: bytes, read: float) -> RawAnswer:
    """GET /events/stream with this Last-Event-ID (raw bytes), read for `read` seconds."""
    assert client.portal is not None
    headers = [HOST, (b"last-event-id", last_event_id)]
    return client.portal.call(
        lambda: call(app, "GET", b"/events/stream", headers=headers, stream_read=read)
    )


def frame_ids(body: bytes) -> list[int]:
    """The `id:` of every event frame in an SSE body."""
    return [int(found) for found in re.findall(rb"^id: (\d+)$", body, re.MULTILINE)]


@pytest.mark.parametrize(
    "raw",
    [
        "²".encode("latin-1"),  # isdigit() says yes, int() says no
        "³¹".encode("latin-1"),
        "٣".encode(),  # an Arabic-Indic three, as UTF-8 bytes (latin-1 junk to Starlette)
        b"-1",
        b"+1",
        b"1e3",
        b"0x10",
        b"1_000",
        b" 5",
        b"5 ",
        b"",
        b"99999999999999999999",  # 20 digits
        b"9223372036854775808",  # 2**63: 19 digits, one past the largest position
        b"\xff\xfe\x00junk",
        b"\xc3\xa9",
    ],
    ids=repr,
)
def test_a_last_event_id_that_is_not_a_position_is_a_422_naming_the_header(
    client: TestClient, app: Starlette, raw: bytes
) -> None:
    answer = stream(client, app, raw, 0.05)

    assert answer.raised is None
    assert answer.status == 422
    assert answer.header("content-type") == "application/json"
    assert answer.json() == {
        "error": "validation_error",
        "detail": DETAIL.format(raw.decode("latin-1")[:40]),
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(b"0", [1, 2, 3]), (b"1", [2, 3]), (b"3", []), (b"9223372036854775807", [])],
)
def test_a_last_event_id_in_range_resumes_right_after_it(
    client: TestClient, app: Starlette, raw: bytes, expected: list[int]
) -> None:
    for name in ("one", "two", "three"):  # a manual workflow: one event each
        assert client.post("/workflow/start", json={"name": name, "auto_start": False}).is_success

    answer = stream(client, app, raw, 0.3)

    assert answer.raised is None
    assert answer.status == 200
    assert answer.body.startswith(b": connected\n\n")
    assert frame_ids(answer.body) == expected


# Read models that lag ---------------------------------------------------------------------------


async def failing_save(*args: Any) -> None:
    """Stands in for the projection storage's `save`, as on a full disk."""
    raise OSError(28, "No space left on device")


@pytest.fixture
def stalled(client: TestClient, app: Starlette, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The read models stop following the log (every save fails); a short settle wait."""
    monkeypatch.setattr(responses, "SETTLE_SECONDS", 0.2)
    monkeypatch.setattr(runtime_of(app).projections, "save", failing_save)
    yield
    monkeypatch.undo()  # the read models catch up again before the lifespan ends


def test_a_command_answers_normally_without_the_lag_header(client: TestClient) -> None:
    response = client.post("/workflow/start", json={"name": "fresh", "auto_start": False})

    assert response.status_code == 201
    assert "x-read-model-lag" not in response.headers


def test_commands_whose_read_models_lag_answer_their_recorded_outcome(
    client: TestClient, app: Starlette, stalled: None
) -> None:
    started = client.post("/workflow/start", json={"name": "lagging", "auto_start": False})
    created = client.post("/workflows", json={"name": "waiting"})
    advanced = client.post("/workflow/1/next")
    edited = client.put("/workflows/2", json={"description": "edited while lagging"})
    cancelled = client.post("/workflow/1/cancel")
    deleted = client.delete("/workflow/1")
    task = client.post(
        "/tasks", json={"name": "nap", "task_type": "sleep", "config": {"duration": 0}}
    )

    answers = [started, created, advanced, edited, cancelled, deleted, task]
    assert [a.status_code for a in answers] == [201, 201, 200, 200, 200, 204, 201]
    assert all(a.headers["x-read-model-lag"] == "true" for a in answers)
    assert started.json() == {
        "message": "Workflow started",
        "workflow_id": 1,
        "name": "lagging",
        "status": "INIT",
        "current_state": "INIT",
    }
    assert created.json()["workflow_id"] == 2
    assert created.json()["status"] == "INIT"
    assert advanced.json() == {
        "message": "Workflow advanced to PREPARE",
        "workflow_id": 1,
        "current_state": "PREPARE",
        "status": "PREPARE",
    }
    assert edited.json()["description"] == "edited while lagging"
    assert cancelled.json()["status"] == "CANCELLED"
    assert task.json()["id"] == 1
    assert task.json()["status"] == "pending"
    # Each command is in the log once: nothing told the client to send it again.
    log = client.get("/events", params={"limit": 1000}).json()["events"]
    assert [e["type"] for e in log if e["stream_id"] == "workflow-1"] == [
        "WorkflowStarted",
        "StepStarted",
        "StepSucceeded",
        "WorkflowTransitioned",
        "WorkflowTransitioned",
        "WorkflowDeleted",
    ]
    assert [e["stream_id"] for e in log if e["type"] == "WorkflowCreated"] == ["workflow-2"]


def test_the_read_models_show_a_lagging_command_once_they_catch_up(
    client: TestClient, app: Starlette, stalled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = client.post("/workflow/start", json={"name": "later", "auto_start": False})
    assert started.headers["x-read-model-lag"] == "true"
    assert client.get("/workflow/1").status_code == 404  # not in the read models yet

    monkeypatch.undo()
    assert client.portal is not None
    runtime = runtime_of(app)
    client.portal.call(lambda: runtime.projector.wait_for(1, 5.0))

    assert client.get("/workflow/1").json()["name"] == "later"
    assert client.get("/workflows").json()[0]["workflow_id"] == 1


def test_stalled_read_models_do_not_refuse_reads_of_what_they_hold(
    client: TestClient, app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.post("/workflow/start", json={"name": "before", "auto_start": False}).is_success
    monkeypatch.setattr(responses, "SETTLE_SECONDS", 0.2)
    saves: list[Sequence[Row]] = []

    async def failing(rows: Sequence[Row], *args: Any) -> None:
        saves.append(rows)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(runtime_of(app).projections, "save", failing)

    assert client.post("/workflow/1/cancel").headers["x-read-model-lag"] == "true"
    assert client.get("/workflow/1").json()["status"] == "INIT"  # what the read model holds
    assert saves  # the projector did try
    monkeypatch.undo()


def test_a_lagging_command_retried_with_its_idempotency_key_is_not_recorded_twice(
    client: TestClient, stalled: None
) -> None:
    body = {"name": "once", "auto_start": False}
    key = {"Idempotency-Key": "lagging-start-1"}

    first = client.post("/workflow/start", json=body, headers=key)
    again = client.post("/workflow/start", json=body, headers=key)

    assert (first.status_code, again.status_code) == (201, 201)
    assert first.headers["x-read-model-lag"] == "true"
    assert again.json() == first.json()
    log = client.get("/events", params={"limit": 1000}).json()["events"]
    assert [e["stream_id"] for e in log if e["type"] == "WorkflowStarted"] == ["workflow-1"]
