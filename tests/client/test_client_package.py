"""The client package itself, without a server: its types mirror the server's, it has a method
for every route, it loads none of the server, and its I/O-free parts (SSE frames, back-off,
Retry-After) behave as documented."""

from __future__ import annotations

import ast
import email.utils
import inspect
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from orchestrator.client import (
    AsyncClient,
    Client,
    ConnectionFailed,
    RetryPolicy,
    UnexpectedResponse,
)
from orchestrator.client import types as client_types
from orchestrator.client._retry import parse_retry_after
from orchestrator.client._sse import Feed
from orchestrator.http import response_types as server_types
from orchestrator.http.endpoint_table import ENDPOINTS

#: Each server response type and the client type that mirrors it.
MIRRORS: dict[type[Any], type[Any]] = {
    server_types.WorkflowOut: client_types.Workflow,
    server_types.TransitionOut: client_types.Transition,
    server_types.WorkflowStartedResponse: client_types.WorkflowStarted,
    server_types.StepResponse: client_types.StepResult,
    server_types.RetryResponse: client_types.RetryResult,
    server_types.ExecutionStatus: client_types.ExecutionStatus,
    server_types.TaskOut: client_types.Task,
    server_types.EventOut: client_types.Event,
    server_types.EventPage: client_types.EventPage,
    server_types.WorkerPoolStats: client_types.PoolStats,
    server_types.WorkflowCounts: client_types.WorkflowCounts,
    server_types.ExecutionStats: client_types.Stats,
    server_types.Health: client_types.Health,
    server_types.ServiceInfo: client_types.ServiceInfo,
    server_types.TransitionRow: client_types.TransitionRule,
    server_types.StateMachine: client_types.StateMachine,
    server_types.StepTaskRow: client_types.StepTask,
    server_types.CurrentStep: client_types.CurrentStep,
    server_types.Activity: client_types.Activity,
    server_types.ActivityMinute: client_types.ActivityMinute,
    server_types.Cluster: client_types.Cluster,
    server_types.ProcessLeases: client_types.ProcessLeases,
}

#: Every route and the client method that calls it.
ROUTES = {
    ("POST", "/workflow/start"): "start",
    ("GET", "/workflow/{workflow_id}"): "get",
    ("DELETE", "/workflow/{workflow_id}"): "delete",
    ("POST", "/workflow/{workflow_id}/next"): "next",
    ("POST", "/workflow/{workflow_id}/retry"): "retry",
    ("POST", "/workflow/{workflow_id}/cancel"): "cancel",
    ("POST", "/workflows"): "create",
    ("GET", "/workflows"): "list",
    ("GET", "/workflows/{workflow_id}"): "get",  # the same read as /workflow/{id}
    ("PUT", "/workflows/{workflow_id}"): "update",
    ("DELETE", "/workflows/{workflow_id}"): "delete",  # the same handler as /workflow/{id}
    ("GET", "/workflows/{workflow_id}/tasks"): "workflow_tasks",
    ("GET", "/workflows/{workflow_id}/transitions"): "transitions",
    ("POST", "/tasks"): "create_task",
    ("GET", "/tasks"): "list_tasks",
    ("GET", "/tasks/{task_id}"): "get_task",
    ("DELETE", "/tasks/{task_id}"): "delete_task",
    ("POST", "/execution/workflows/{workflow_id}/start"): "launch",
    ("GET", "/execution/workflows/{workflow_id}/status"): "status",
    ("POST", "/execution/workflows/{workflow_id}/cancel"): "cancel",  # the same handler
    ("GET", "/execution/stats"): "stats",
    ("GET", "/execution/activity"): "activity",
    ("GET", "/"): "info",
    ("GET", "/health"): "health",
    ("GET", "/state-machine"): "state_machine",
    ("GET", "/workflow/{workflow_id}/events"): "workflow_events",
    ("GET", "/events"): "events",
    ("GET", "/events/stream"): "stream",
}


def shape(kind: type[Any]) -> list[tuple[str, bool]]:
    """A Struct's fields in order, each with whether it is required."""
    return [(field.name, field.required) for field in msgspec.structs.fields(kind)]


@pytest.mark.parametrize("server_type", list(MIRRORS), ids=lambda kind: kind.__name__)
def test_each_client_type_has_the_fields_of_the_server_type_it_mirrors(
    server_type: type[Any],
) -> None:
    assert shape(MIRRORS[server_type]) == shape(server_type)


def test_every_response_type_of_the_endpoint_table_has_a_client_mirror() -> None:
    answered = set()
    for endpoint in ENDPOINTS:
        response = endpoint.response
        if response is not None:
            answered.add(getattr(response, "__args__", (response,))[0])

    assert answered <= set(MIRRORS)


def test_every_route_has_a_method_in_both_clients() -> None:
    assert {(endpoint.method, endpoint.path) for endpoint in ENDPOINTS} == set(ROUTES)
    for name in set(ROUTES.values()):
        blocking, awaited = getattr(Client, name), getattr(AsyncClient, name)
        assert inspect.signature(blocking).parameters == inspect.signature(awaited).parameters
        assert inspect.iscoroutinefunction(awaited) != (name == "stream"), name


def test_importing_the_client_loads_none_of_the_server() -> None:
    program = (
        "import sys, orchestrator.client\n"
        "print(sorted(m for m in sys.modules if m.startswith('orchestrator')))\n"
        "print('starlette' in sys.modules, 'uvicorn' in sys.modules)\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()

    loaded = ast.literal_eval(shown[0])
    assert all(name == "orchestrator" or name.startswith("orchestrator.client") for name in loaded)
    assert shown[1] == "False False"


# Server-Sent Events, frame by frame -----------------------------------------------------------


def event_json(position: int) -> str:
    """The data line of one event frame, as the server encodes it."""
    return msgspec.json.encode(
        {
            "position": position,
            "stream_id": "workflow-1",
            "version": position,
            "type": "StepStarted",
            "data": {"state": "INIT"},
            "metadata": {},
            "recorded_at": "2026-11-29T12:47:29.521251Z",
            "schema_version": 1,
            "hash": "0" * 64,
            "added_by_a_newer_server": True,
        }
    ).decode()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """An httpx client to build requests with (nothing is sent)."""
    with httpx.Client(base_url="http://127.0.0.1:9") as client:
        yield client


def feed_lines(feed: Feed, lines: list[str]) -> list[int]:
    """The positions of the events the lines complete."""
    events = (feed.line(line) for line in lines)
    return [event.position for event in events if event is not None]


def test_frames_become_events_and_comments_and_other_fields_are_skipped(
    http: httpx.Client,
) -> None:
    feed = Feed(0, RetryPolicy(), 60.0)
    feed.request(http)

    positions = feed_lines(
        feed,
        [
            *[": connected", "", "id: 1", "event: StepStarted", f"data: {event_json(1)}", ""],
            *["retry: 10", ": keep-alive", "", "id: 2", f"data:{event_json(2)}", ""],
        ],
    )

    assert positions == [1, 2]
    assert feed.position == 2


def test_data_split_over_lines_is_joined_with_newlines_before_it_is_decoded(
    http: httpx.Client,
) -> None:
    feed = Feed(0, RetryPolicy(), 60.0)
    feed.request(http)
    text = event_json(1)
    cut = text.index(",") + 1  # a newline after a comma is whitespace between JSON tokens

    assert feed_lines(feed, [f"data: {text[:cut]}", f"data: {text[cut:]}", ""]) == [1]


def test_a_frame_cut_off_by_a_reconnection_is_dropped_and_old_events_are_not_repeated(
    http: httpx.Client,
) -> None:
    feed = Feed(0, RetryPolicy(), 60.0)
    first = feed.request(http)
    assert feed_lines(feed, [f"data: {event_json(1)}", "", f"data: {event_json(2)}"]) == [1]

    again = feed.request(http)
    positions = feed_lines(feed, ["", f"data: {event_json(1)}", "", f"data: {event_json(2)}", ""])

    assert positions == [2]
    assert first.url.params["after"] == "0" and "Last-Event-ID" not in first.headers
    assert again.headers["Last-Event-ID"] == "1" and "after" not in again.url.params


def test_a_frame_that_is_not_an_event_is_an_unexpected_response(http: httpx.Client) -> None:
    feed = Feed(0, RetryPolicy(), 60.0)
    feed.request(http)

    with pytest.raises(UnexpectedResponse, match="events/stream"):
        feed_lines(feed, ['data: {"position": "one"}', ""])


def test_keep_alives_restart_the_count_of_failures_but_the_hello_does_not(
    http: httpx.Client,
) -> None:
    feed = Feed(0, RetryPolicy(max_retries=1, backoff=0.0, max_backoff=0.0), 60.0)
    url = "http://127.0.0.1:9/events/stream"

    feed.request(http)
    feed.line(": connected")
    feed.after_end(url)  # the one failure allowed
    feed.request(http)
    feed.line(": connected")
    feed.line(": keep-alive")
    feed.after_end(url)  # allowed again: the stream showed it was alive
    feed.request(http)
    feed.line(": connected")

    with pytest.raises(ConnectionFailed, match="closed the stream") as raised:
        feed.after_end(url)
    assert raised.value.attempts == 2


# Back-off and Retry-After -------------------------------------------------------------------


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    in_ten_seconds = email.utils.formatdate(time.time() + 10, usegmt=True)

    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 0 ") == 0.0
    date_seconds = parse_retry_after(in_ten_seconds)
    assert date_seconds is not None and 8 <= date_seconds <= 10
    assert parse_retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0
    assert [parse_retry_after(value) for value in (None, "", "-1", "soon", "1e3", "²")] == [
        None
    ] * 6


def test_pauses_grow_exponentially_within_the_cap_and_never_undercut_retry_after() -> None:
    policy = RetryPolicy(max_retries=10, backoff=0.1, max_backoff=1.0)

    pauses = [policy.pause(failures) for failures in range(1, 8)]

    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]
    assert all(c / 2 <= p <= c for p, c in zip(pauses, ceilings, strict=True))
    assert policy.pause(1, retry_after=3.0) == 3.0


def test_a_policy_that_cannot_work_is_refused() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(backoff=2.0, max_backoff=1.0)


def test_an_id_that_is_not_an_int_is_refused_before_anything_is_sent() -> None:
    with Client("http://127.0.0.1:9") as client, pytest.raises(TypeError, match="an id"):
        client.get("1/events")  # type: ignore[arg-type]
