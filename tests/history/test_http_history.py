"""History over HTTP: time travel, a workflow's events, the global log, and the live SSE feed.

The reads are exercised through the ASGI app (in memory, and once on a SQLite file); the SSE
feed is read from a real server process with httpx streaming, every read bounded by a deadline.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from orchestrator.engine.tasks import TaskRegistry
from orchestrator.http.app import create_app, runtime_of
from orchestrator.settings import Settings
from tests.history.conftest import (
    ServeDatabase,
    database_path,
    json_of,
    start_workflow,
    wait_for,
    wait_until_caught_up,
    wait_until_finished_complete,
)
from tests.http.conftest import is_settled, quiesce
from tests.settings_for_tests import TESTCLIENT_HOSTS

Json = dict[str, Any]

EVENT_FIELDS = {"position", "version", "type", "data", "metadata", "recorded_at"}


# Through the ASGI app ----------------------------------------------------------------------------


@pytest.fixture
def settings() -> Settings:
    """In-memory store, instant tasks, no log file."""
    return Settings(
        database_url="memory://",
        task_time_scale=0,
        log_file="",
        allowed_hosts=TESTCLIENT_HOSTS,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """A client of the app from the factory, inside `with` so the lifespan runs."""
    app = create_app(settings, TaskRegistry())
    with TestClient(app, raise_server_exceptions=False) as test_client:
        try:
            yield test_client
        finally:
            assert test_client.portal is not None
            test_client.portal.call(quiesce, runtime_of(app))


def read_until_settled(client: TestClient, workflow_id: int) -> Json:
    """GET /workflow/{id} once nothing more will happen to the workflow by itself."""
    return wait_for(
        lambda: json_of(client.get(f"/workflow/{workflow_id}"), 200),
        is_settled,
        what=f"workflow {workflow_id} to settle",
    )


def settled_workflow(client: TestClient, name: str, **body: Any) -> Json:
    """Start a workflow and return its read once it has settled."""
    started = json_of(client.post("/workflow/start", json={"name": name, **body}), 201)
    return read_until_settled(client, started["workflow_id"])


def events_of(client: TestClient, workflow_id: int) -> list[Json]:
    """GET /workflow/{id}/events."""
    events: list[Json] = json_of(client.get(f"/workflow/{workflow_id}/events"), 200)
    return events


def whole_log(client: TestClient | httpx.Client, limit: int = 1000) -> list[Json]:
    """Every event of the log, read page by page through GET /events."""
    events: list[Json] = []
    after = 0
    while True:
        page = json_of(client.get("/events", params={"after": after, "limit": limit}), 200)
        if not page["events"]:
            return events
        events += page["events"]
        after = page["next_after"]


def status_after(events: list[Json]) -> str:
    """The state a workflow is in after `events`, from their transitions' payloads."""
    status = "INIT"
    for event in events:
        if event["type"] == "WorkflowTransitioned":
            status = event["data"]["to_state"]
    return status


def test_at_version_returns_the_state_as_it_was_after_that_many_events(
    client: TestClient,
) -> None:
    current = settled_workflow(client, "travel", config={"iterations": 7})
    workflow_id = current["workflow_id"]
    events = events_of(client, workflow_id)
    assert [e["type"] for e in events[:4]] == [
        "WorkflowStarted",
        "StepStarted",
        "StepSucceeded",
        "WorkflowTransitioned",
    ]

    at_four = client.get(f"/workflow/{workflow_id}", params={"at_version": 4})

    assert at_four.status_code == 200, at_four.text
    back_then = at_four.json()
    assert set(back_then) == set(current)
    assert back_then["status"] == back_then["current_state"] == "PREPARE"
    assert back_then["version"] == 4
    assert back_then["transitions"] == current["transitions"][:1]
    assert back_then["task_results"] == {"INIT": current["task_results"]["INIT"]}
    assert back_then["completed_at"] is None
    assert back_then["next_trigger"] == "execute"


def test_at_version_agrees_with_the_events_at_every_version_and_with_the_current_read_at_the_end(
    client: TestClient,
) -> None:
    failed = settled_workflow(client, "every version", config={"simulate_failure": True})
    workflow_id = failed["workflow_id"]
    assert failed["status"] == "FAILED"
    assert client.post(f"/workflow/{workflow_id}/retry").status_code == 200
    current = read_until_settled(client, workflow_id)
    events = events_of(client, workflow_id)
    versions = range(1, len(events) + 1)

    reads = [
        json_of(client.get(f"/workflow/{workflow_id}", params={"at_version": version}), 200)
        for version in versions
    ]

    assert [read["status"] for read in reads] == [status_after(events[:v]) for v in versions]
    assert [read["version"] for read in reads] == list(versions)
    assert "FAILED" in [read["status"] for read in reads]
    assert reads[-1] == current


def test_at_version_past_the_end_is_404(client: TestClient) -> None:
    workflow_id = settled_workflow(client, "short")["workflow_id"]
    count = len(events_of(client, workflow_id))

    response = client.get(f"/workflow/{workflow_id}", params={"at_version": count + 1})

    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "detail": f"workflow {workflow_id} has no version {count + 1}: it has {count} events",
    }


def test_at_version_zero_is_422_naming_the_lower_bound(client: TestClient) -> None:
    workflow_id = settled_workflow(client, "short")["workflow_id"]

    response = client.get(f"/workflow/{workflow_id}", params={"at_version": 0})

    assert response.status_code == 422
    assert response.json() == {
        "error": "validation_error",
        "detail": "invalid query parameter: Expected `int` >= 1 - at `$.at_version`",
    }


@pytest.mark.parametrize("value", ["-1", "two", "1.5"])
def test_at_version_that_is_not_a_positive_integer_is_422(client: TestClient, value: str) -> None:
    workflow_id = settled_workflow(client, "short")["workflow_id"]

    response = client.get(f"/workflow/{workflow_id}", params={"at_version": value})

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["detail"].startswith("invalid query parameter: ")
    assert body["detail"].endswith("at `$.at_version`")


def test_a_workflows_events_list_every_event_with_its_position_version_and_payload(
    client: TestClient,
) -> None:
    workflow_id = settled_workflow(client, "listed", auto_start=False)["workflow_id"]
    assert client.post(f"/workflow/{workflow_id}/next").status_code == 200
    assert client.post(f"/workflow/{workflow_id}/cancel").status_code == 200

    events = events_of(client, workflow_id)

    assert all(set(event) >= EVENT_FIELDS for event in events)
    assert [e["version"] for e in events] == list(range(1, len(events) + 1))
    positions = [e["position"] for e in events]
    assert positions == sorted(set(positions))
    assert all(e["stream_id"] == f"workflow-{workflow_id}" for e in events)
    assert all(e["data"]["type"] == e["type"] for e in events)
    assert events[0]["data"]["name"] == "listed"
    assert events[-1]["type"] == "WorkflowTransitioned"
    assert events[-1]["data"]["to_state"] == "CANCELLED"
    assert all(isinstance(e["metadata"], dict) and e["recorded_at"] for e in events)
    assert events == [e for e in whole_log(client) if e["stream_id"] == f"workflow-{workflow_id}"]


def test_a_deleted_workflows_events_are_404_though_they_stay_in_the_log(
    client: TestClient,
) -> None:
    workflow_id = settled_workflow(client, "gone")["workflow_id"]
    assert client.delete(f"/workflow/{workflow_id}").status_code == 204

    response = client.get(f"/workflow/{workflow_id}/events")

    assert response.status_code == 404
    assert response.json() == {
        "error": "not_found",
        "detail": f"workflow {workflow_id} does not exist",
    }
    stream = json_of(client.get("/events", params={"stream": f"workflow-{workflow_id}"}), 200)
    assert stream["events"][-1]["type"] == "WorkflowDeleted"


def test_the_events_pages_walk_the_whole_log_in_order(client: TestClient) -> None:
    for name in ("one", "two", "three"):
        settled_workflow(client, name)
    task = json_of(client.post("/tasks", json={"name": "sum", "task_type": "compute"}), 201)
    wait_for(
        lambda: json_of(client.get(f"/tasks/{task['task_id']}"), 200)["status"],
        lambda status: status == "completed",
        what="the task to complete",
    )
    everything = json_of(client.get("/events", params={"limit": 1000}), 200)
    head = everything["head"]

    pages: list[Json] = []
    after = 0
    while not pages or pages[-1]["events"]:
        pages.append(json_of(client.get("/events", params={"after": after, "limit": 7}), 200))
        after = pages[-1]["next_after"]

    assert len(everything["events"]) == head == everything["next_after"]
    assert [e["position"] for e in everything["events"]] == list(range(1, head + 1))
    assert all(page["head"] == head for page in pages)
    assert all(len(page["events"]) == 7 for page in pages[:-2])
    assert [e for page in pages for e in page["events"]] == everything["events"]
    assert [page["next_after"] for page in pages[:-1]] == [
        page["events"][-1]["position"] for page in pages[:-1]
    ]
    assert pages[-1] == {"events": [], "next_after": head, "head": head}
    assert {e["stream_id"] for e in everything["events"]} == {
        "workflow-1",
        "workflow-2",
        "workflow-3",
        f"task-{task['task_id']}",
    }


def test_the_events_filter_by_type_and_by_stream(client: TestClient) -> None:
    for name in ("one", "two"):
        settled_workflow(client, name)
    log = whole_log(client)

    transitions = json_of(client.get("/events", params={"type": "WorkflowTransitioned"}), 200)
    second = json_of(client.get("/events", params={"stream": "workflow-2", "limit": 3}), 200)
    both = json_of(
        client.get(
            "/events", params={"stream": "workflow-1", "type": "StepSucceeded", "limit": 1000}
        ),
        200,
    )

    assert transitions["events"] == [e for e in log if e["type"] == "WorkflowTransitioned"]
    assert len(transitions["events"]) == 8
    assert second["events"] == [e for e in log if e["stream_id"] == "workflow-2"][:3]
    assert second["next_after"] == second["events"][-1]["position"]
    assert both["events"] == [
        e for e in log if e["stream_id"] == "workflow-1" and e["type"] == "StepSucceeded"
    ]
    assert len(both["events"]) == 5
    nothing = json_of(client.get("/events", params={"type": "NoSuchEvent", "after": 3}), 200)
    assert nothing == {"events": [], "next_after": 3, "head": len(log)}


def test_a_last_event_id_that_is_not_a_position_is_422(client: TestClient) -> None:
    response = client.get("/events/stream", headers={"Last-Event-ID": "abc"})

    assert response.status_code == 422
    assert response.json() == {
        "error": "validation_error",
        "detail": "Last-Event-ID must be a log position (0 to 2**63-1 in ASCII digits), got 'abc'",
    }


class TestOnSQLite:
    """The same history reads on a SQLite file."""

    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        """Instant tasks on a SQLite file."""
        in_memory = Settings(
            database_url="memory://",
            task_time_scale=0,
            log_file="",
            allowed_hosts=TESTCLIENT_HOSTS,
        )
        return dataclasses.replace(in_memory, database_url=f"sqlite:///{tmp_path / 'wf.db'}")

    def test_time_travel_events_and_pages_read_the_file(self, client: TestClient) -> None:
        current = settled_workflow(client, "on disk", config={"iterations": 4})
        workflow_id = current["workflow_id"]
        events = events_of(client, workflow_id)

        at_four = json_of(client.get(f"/workflow/{workflow_id}", params={"at_version": 4}), 200)
        at_end = json_of(
            client.get(f"/workflow/{workflow_id}", params={"at_version": len(events)}), 200
        )

        assert json_of(client.get("/health"), 200)["database"] == "sqlite"
        assert at_four["status"] == status_after(events[:4]) == "PREPARE"
        assert at_four["version"] == 4
        assert at_end == current
        assert whole_log(client, limit=5) == events


# The SSE feed of a real server --------------------------------------------------------------------

#: How long a test may wait for the frames it expects.
STREAM_DEADLINE = 10.0
#: Bound on any single read from the stream; keep-alives arrive far more often than this.
STREAM_TIMEOUT = httpx.Timeout(5.0, read=2.0)


@dataclass
class Frame:
    """One Server-Sent Events frame: its fields, or the comments of a comment-only frame."""

    id: int | None = None
    event: str | None = None
    data: str | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def is_event(self) -> bool:
        """True for a frame that carries an event (not a comment)."""
        return self.id is not None


class FrameReader:
    """Reads frames off a streaming response; every read is bounded by a deadline."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        self._lines = response.iter_lines()

    def next_frame(self, deadline: float) -> Frame:
        """The next complete frame; fails if the deadline passes or the stream ends first."""
        frame = Frame()
        started = False
        for line in self._lines:
            if time.monotonic() > deadline:
                raise AssertionError("the deadline passed while reading a frame")
            if not line:
                if started:
                    return frame
                continue
            started = True
            if line.startswith(":"):
                frame.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                frame.id = int(value)
            elif name == "event":
                frame.event = value
            elif name == "data":
                frame.data = value if frame.data is None else f"{frame.data}\n{value}"
        raise AssertionError("the stream ended")

    def events_until(self, last_position: int, timeout: float = STREAM_DEADLINE) -> list[Frame]:
        """Event frames up to the one at `last_position` (keep-alives skipped)."""
        deadline = time.monotonic() + timeout
        frames: list[Frame] = []
        while not frames or (frames[-1].id or 0) < last_position:
            frame = self.next_frame(deadline)
            if frame.is_event:
                frames.append(frame)
        return frames

    def events(self, count: int, timeout: float = STREAM_DEADLINE) -> list[Frame]:
        """The next `count` event frames."""
        deadline = time.monotonic() + timeout
        frames: list[Frame] = []
        while len(frames) < count:
            frame = self.next_frame(deadline)
            if frame.is_event:
                frames.append(frame)
        return frames


def run_workflows(client: httpx.Client, *names: str) -> int:
    """Run workflows to COMPLETE; the log's head once the read models have applied it all."""
    for name in names:
        wait_until_finished_complete(client, start_workflow(client, name))
    head: int = wait_until_caught_up(client)["log_position"]
    return head


@pytest.mark.e2e
def test_stream_frames_carry_their_position_as_id_and_arrive_in_log_order(
    serve: ServeDatabase, tmp_path: Path
) -> None:
    server = serve(database_path(tmp_path, "live"), SSE_KEEPALIVE_SECONDS="0.2")
    with (
        server.client() as client,
        httpx.Client(base_url=server.base_url, timeout=STREAM_TIMEOUT) as streamer,
        streamer.stream("GET", "/events/stream", params={"after": 0}) as response,
    ):
        reader = FrameReader(response)
        head = run_workflows(client, "first", "second")
        frames = reader.events_until(head)
        log = whole_log(client)

    assert [frame.id for frame in frames] == [event["position"] for event in log]
    assert [frame.event for frame in frames] == [event["type"] for event in log]
    assert [json.loads(frame.data or "") for frame in frames] == log


@pytest.mark.e2e
def test_reconnecting_with_last_event_id_resumes_right_after_it(
    serve: ServeDatabase, tmp_path: Path
) -> None:
    server = serve(database_path(tmp_path, "live"), SSE_KEEPALIVE_SECONDS="0.2")
    with (
        server.client() as client,
        httpx.Client(base_url=server.base_url, timeout=STREAM_TIMEOUT) as streamer,
    ):
        run_workflows(client, "before", "the break")
        with streamer.stream("GET", "/events/stream", params={"after": 0}) as response:
            before_break = FrameReader(response).events(5)
        last_seen = before_break[-1].id
        head = run_workflows(client, "while", "away")
        resume = {"Last-Event-ID": str(last_seen)}
        with streamer.stream("GET", "/events/stream", headers=resume) as response:
            after_break = FrameReader(response).events_until(head)
        log = [event["position"] for event in whole_log(client)]

    assert last_seen == 5
    assert after_break[0].id == last_seen + 1
    assert [frame.id for frame in before_break + after_break] == log


@pytest.mark.e2e
def test_a_stream_opened_without_a_position_starts_with_the_events_after_it_opened(
    serve: ServeDatabase, tmp_path: Path
) -> None:
    server = serve(database_path(tmp_path, "live"), SSE_KEEPALIVE_SECONDS="0.2")
    with (
        server.client() as client,
        httpx.Client(base_url=server.base_url, timeout=STREAM_TIMEOUT) as streamer,
    ):
        earlier = run_workflows(client, "earlier")
        with streamer.stream("GET", "/events/stream") as response:
            reader = FrameReader(response)
            connected = reader.next_frame(time.monotonic() + STREAM_DEADLINE)
            head = run_workflows(client, "later")
            frames = reader.events_until(head)

    assert connected.comments == ["connected"]
    assert [frame.id for frame in frames] == list(range(earlier + 1, head + 1))


@pytest.mark.e2e
def test_an_idle_stream_sends_keep_alive_comments(serve: ServeDatabase, tmp_path: Path) -> None:
    server = serve(database_path(tmp_path, "live"), SSE_KEEPALIVE_SECONDS="0.2")
    with (
        server.client() as client,
        httpx.Client(base_url=server.base_url, timeout=STREAM_TIMEOUT) as streamer,
    ):
        run_workflows(client, "done before connecting")
        with streamer.stream("GET", "/events/stream") as response:
            reader = FrameReader(response)
            deadline = time.monotonic() + STREAM_DEADLINE
            frames = [reader.next_frame(deadline) for _ in range(4)]

    assert [frame.comments for frame in frames] == [
        ["connected"],
        ["keep-alive"],
        ["keep-alive"],
        ["keep-alive"],
    ]
    assert not any(frame.is_event for frame in frames)
