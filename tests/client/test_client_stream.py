"""`Client.stream`: the log's events over Server-Sent Events, resumed with Last-Event-ID after a
cut connection or a server restart, so every event arrives once and in order."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import pytest

from orchestrator.client import (
    Client,
    ConnectionFailed,
    Event,
    Overloaded,
    RetryPolicy,
    Unauthorized,
)
from tests.client.conftest import QUICK
from tests.client.transports import Busy, CutStreams, resumed_from
from tests.e2e.conftest import ServerProcess, StartServer
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e


def collect_until(events: Iterable[Event], head: int) -> list[Event]:
    """Events from `events` up to and including position `head`."""
    taken: list[Event] = []
    for event in events:
        taken.append(event)
        if event.position >= head:
            break
    return taken


def log_positions(client: Client) -> list[int]:
    """Every position in the log, read page by page with GET /events."""
    positions: list[int] = []
    after = 0
    while True:
        page = client.events(after=after, limit=1000)
        positions += [event.position for event in page.events]
        if page.next_after >= page.head:
            return positions
        after = page.next_after


def test_a_cut_connection_is_resumed_after_the_last_event_without_loss_or_duplicates(
    server: ServerProcess,
) -> None:
    transport = CutStreams(count=2)
    with Client(server.base_url, retry=QUICK, transport=transport) as client:
        client.wait(client.start("streamed").workflow_id, timeout=15)
        head = client.events().head

        with client.stream(after=0) as events:
            received = collect_until(events, head)
        logged = log_positions(client)

    assert [event.position for event in received] == logged == list(range(1, head + 1))
    resumes = resumed_from(transport)
    assert len(resumes) == 3
    assert resumes[0] is None
    assert transport.stream_requests[0].url.params["after"] == "0"
    # Each reconnection names the last event received before its cut, and they move forward.
    resumed_at = [int(position) for position in resumes[1:] if position is not None]
    assert resumed_at == sorted(set(resumed_at))
    assert all(1 <= position < head for position in resumed_at)


def test_a_stream_rides_out_a_server_killed_and_restarted_and_misses_nothing(
    server: ServerProcess,
) -> None:
    transport = CutStreams()
    with Client(server.base_url, retry=QUICK, transport=transport) as client:
        waiting = client.start("waiting", auto_start=False).workflow_id
        events = client.stream(after=0)
        first = next(events)

        server.restart()  # SIGKILL, then a new process on the same port and database
        client.next(waiting)
        finished = client.wait(client.start("after-restart").workflow_id, timeout=15)
        head = client.events().head
        received = [first, *collect_until(events, head)]
        events.close()
        logged = log_positions(client)

    assert finished.status == "COMPLETE"
    assert [event.position for event in received] == logged == list(range(1, head + 1))
    assert [event.stream_id for event in received[:2]] == [f"workflow-{waiting}"] * 2
    assert resumed_from(transport) == [None, "1"]


def test_a_stream_without_after_begins_with_events_recorded_once_it_is_open(
    server: ServerProcess,
) -> None:
    transport = CutStreams()
    with Client(server.base_url, retry=QUICK, transport=transport) as client:
        client.wait(client.start("earlier").workflow_id, timeout=15)
        earlier_head = client.events().head

        def start_once_open() -> None:
            wait_for(lambda: len(transport.stream_requests), bool, what="the stream to open")
            with Client(server.base_url, retry=QUICK) as other:
                other.start("later", auto_start=False)

        starter = threading.Thread(target=start_once_open)
        starter.start()
        with client.stream() as events:
            first = next(events)
        starter.join()

    assert first.position == earlier_head + 1
    assert (first.type, first.data["name"]) == ("WorkflowStarted", "later")


def test_leaving_a_stream_closes_its_connection(server: ServerProcess) -> None:
    transport = CutStreams()
    with Client(server.base_url, retry=QUICK, transport=transport) as client:
        client.start("one", auto_start=False)
        for _event in client.stream(after=0):
            break
        closed_by_break = list(transport.closed)
        with client.stream(after=0) as events:
            next(events)
        closed_by_with = list(transport.closed)

    assert closed_by_break == [True]
    assert closed_by_with == [True, True]


def test_a_stream_gives_up_after_its_retries_when_the_server_stays_down(
    server: ServerProcess,
) -> None:
    policy = RetryPolicy(max_retries=2, backoff=0.01, max_backoff=0.02)
    with Client(server.base_url, retry=QUICK) as client:
        client.start("one", auto_start=False)
        events = client.stream(after=0, retry=policy)
        next(events)
        server.kill()

        with pytest.raises(ConnectionFailed) as raised:
            next(events)

    assert raised.value.attempts == 3
    assert raised.value.url == f"{server.base_url}/events/stream"


def test_a_busy_server_is_asked_again_after_retry_after_and_the_stream_begins(
    server: ServerProcess,
) -> None:
    busy = Busy(count=2, status=503, retry_after="0")
    with Client(server.base_url, retry=QUICK) as client:
        client.start("one", auto_start=False)
    with Client(server.base_url, retry=QUICK, transport=busy) as client:
        with client.stream(after=0) as events:
            first = next(events)
        with (
            client.stream(after=0, retry=RetryPolicy(max_retries=0)) as events,
            pytest.raises(Overloaded),
        ):
            busy.to_refuse = 1
            next(events)

    assert (first.position, first.type) == (1, "WorkflowStarted")
    assert [request.url.path for request in busy.requests] == ["/events/stream"] * 4


def test_a_stream_refused_by_the_server_raises_its_error_at_once(
    start_server: StartServer,
) -> None:
    server = start_server(API_TOKEN="client-test-token-0123456789")

    with Client(server.base_url, retry=QUICK) as anonymous, pytest.raises(Unauthorized) as raised:
        next(anonymous.stream(after=0))

    assert (raised.value.status, raised.value.path) == (401, "/events/stream")


def test_a_stream_needs_a_positive_idle_timeout() -> None:
    with Client("http://127.0.0.1:9") as client, pytest.raises(ValueError, match="idle_timeout"):
        client.stream(idle_timeout=0)
