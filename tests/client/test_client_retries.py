"""Retries: a command's Idempotency-Key is kept across its retries, so an answer lost after the
server acted never becomes a second workflow; 429 and 503 are retried after Retry-After; the
retries are bounded."""

from __future__ import annotations

import time

import pytest

from orchestrator.client import (
    Client,
    ConnectionFailed,
    NotFound,
    Overloaded,
    RetryPolicy,
)
from tests.client.conftest import QUICK
from tests.client.transports import Busy, LoseAnswers
from tests.e2e.conftest import ServerProcess, free_port

pytestmark = pytest.mark.e2e


def test_a_start_whose_answer_is_lost_is_retried_with_its_key_and_creates_one_workflow(
    server: ServerProcess,
) -> None:
    transport = LoseAnswers(count=1)

    with Client(server.base_url, retry=QUICK, transport=transport) as client:
        started = client.start("exactly-once")
        workflows = client.list()

    (first, lost), (retried, answer) = transport.commands
    key = first.headers["Idempotency-Key"]
    assert retried.headers["Idempotency-Key"] == key
    assert first.content == retried.content  # the same body bytes, as the key requires
    # The server did start the workflow the first time: the second answer is a replay of it.
    assert lost.status_code == answer.status_code == 201
    assert "Idempotent-Replayed" not in lost.headers
    assert answer.headers["Idempotent-Replayed"] == "true"
    assert lost.json()["workflow_id"] == started.workflow_id
    assert [workflow.workflow_id for workflow in workflows] == [started.workflow_id]


def test_each_call_gets_a_key_of_its_own(server: ServerProcess) -> None:
    transport = LoseAnswers(count=0)

    with Client(server.base_url, retry=QUICK, transport=transport) as client:
        one = client.start("one", auto_start=False).workflow_id
        two = client.start("one", auto_start=False).workflow_id
        client.cancel(one)
        client.delete(one)

    keys = [request.headers["Idempotency-Key"] for request, _ in transport.commands]
    assert one != two
    assert len(keys) == len(set(keys)) == 4


def test_a_delete_whose_answer_is_lost_is_not_reported_as_not_found(
    server: ServerProcess,
) -> None:
    transport = LoseAnswers(count=0)
    with Client(server.base_url, retry=QUICK, transport=transport) as client:
        workflow_id = client.start("gone", auto_start=False).workflow_id
        client.cancel(workflow_id)
        transport.to_lose = 1

        client.delete(workflow_id)  # the retry replays the first 204 instead of a 404

        with pytest.raises(NotFound):
            client.get(workflow_id)
    statuses = [answer.status_code for _, answer in transport.commands[-2:]]
    assert statuses == [204, 204]


def test_a_key_given_by_the_caller_is_sent_and_a_repeat_gets_the_first_answer(
    client: Client,
) -> None:
    first = client.start("nightly", idempotency_key="nightly-2026-11-29")
    again = client.start("nightly", idempotency_key="nightly-2026-11-29")

    assert again == first
    assert len(client.list()) == 1


def test_503_and_429_are_retried_with_the_same_key_until_the_server_answers(
    server: ServerProcess,
) -> None:
    busy = Busy(count=2, status=503)
    too_busy = Busy(count=1, status=429)

    with Client(server.base_url, retry=QUICK, transport=busy) as client:
        started = client.start("patient", auto_start=False)
    with Client(server.base_url, retry=QUICK, transport=too_busy) as client:
        client.cancel(started.workflow_id)
        workflows = client.list()

    assert len({request.headers["Idempotency-Key"] for request in busy.requests}) == 1
    assert len(busy.requests) == 3
    assert [request.method for request in too_busy.requests[:2]] == ["POST", "POST"]
    assert [workflow.workflow_id for workflow in workflows] == [started.workflow_id]


def test_retry_after_is_honoured_before_the_next_attempt(server: ServerProcess) -> None:
    busy = Busy(count=1, status=503, retry_after="1")

    with Client(server.base_url, retry=QUICK, transport=busy) as client:
        began = time.monotonic()
        stats = client.stats()
        waited = time.monotonic() - began

    assert len(busy.requests) == 2
    assert waited >= 1.0
    assert stats.workflows.total == 0


def test_health_is_not_retried_and_an_error_body_on_503_is_raised(
    server: ServerProcess,
) -> None:
    # A 503 from /health with the Health shape is an answer (`degraded`); any other 503 body,
    # here a connection limit's error, is the error it says.
    busy = Busy(count=1, status=503, retry_after="0")

    with Client(server.base_url, retry=QUICK, transport=busy) as client:
        with pytest.raises(Overloaded) as raised:
            client.health()
        health = client.health()

    assert raised.value.code == "store_unavailable"
    assert len(busy.requests) == 2
    assert health.status == "healthy"


def test_when_the_retries_run_out_the_last_refusal_is_raised_with_its_retry_after(
    server: ServerProcess,
) -> None:
    busy = Busy(count=100, status=503, retry_after="0")
    policy = RetryPolicy(max_retries=2, backoff=0.01, max_backoff=0.02)

    with (
        Client(server.base_url, retry=policy, transport=busy) as client,
        pytest.raises(Overloaded) as raised,
    ):
        client.start("never")

    assert len(busy.requests) == 3
    assert (raised.value.status, raised.value.code, raised.value.retry_after) == (
        503,
        "store_unavailable",
        0.0,
    )
    assert raised.value.idempotency_key == busy.requests[0].headers["Idempotency-Key"]


def test_a_retry_after_longer_than_the_policy_allows_is_raised_at_once(
    server: ServerProcess,
) -> None:
    busy = Busy(count=1, status=429, retry_after="3600")

    with (
        Client(server.base_url, retry=QUICK, transport=busy) as client,
        pytest.raises(Overloaded) as raised,
    ):
        client.list()

    assert len(busy.requests) == 1
    assert (raised.value.status, raised.value.retry_after) == (429, 3600.0)


def test_no_server_is_a_connection_failure_after_the_bounded_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    policy = RetryPolicy(max_retries=2, backoff=0.01, max_backoff=0.02)

    with Client(url, retry=policy) as client, pytest.raises(ConnectionFailed) as raised:
        client.start("nowhere", idempotency_key="kept-for-later")

    assert raised.value.attempts == 3
    assert raised.value.idempotency_key == "kept-for-later"
    assert raised.value.url == f"{url}/workflow/start"
    assert "ConnectError" in raised.value.reason
