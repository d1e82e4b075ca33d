"""Error answers become exceptions carrying the status, the API's code and its detail; the
bearer token opens a server that has API_TOKEN set."""

from __future__ import annotations

import pytest

from orchestrator.client import (
    ApiError,
    Client,
    ClientError,
    Conflict,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from tests.client.conftest import QUICK
from tests.e2e.conftest import StartServer

pytestmark = pytest.mark.e2e

TOKEN = "client-test-token-0123456789"


def test_an_unknown_workflow_is_not_found_with_the_code_and_detail_of_the_api(
    client: Client,
) -> None:
    with pytest.raises(NotFound) as raised:
        client.get(999)

    error = raised.value
    assert isinstance(error, ApiError) and isinstance(error, ClientError)
    assert (error.status, error.code, error.detail) == (
        404,
        "not_found",
        "workflow 999 does not exist",
    )
    assert (error.method, error.path) == ("GET", "/workflow/999")
    assert str(error) == "404 not_found: workflow 999 does not exist (GET /workflow/999)"


def test_an_unknown_task_is_not_found_for_reads_and_deletes(client: Client) -> None:
    with pytest.raises(NotFound) as read:
        client.get_task(999)
    with pytest.raises(NotFound) as deleted:
        client.delete_task(999)

    assert read.value.code == deleted.value.code == "not_found"
    assert "999" in read.value.detail
    # A command's error carries the key it was sent with, for a later repeat.
    assert deleted.value.idempotency_key is not None
    assert read.value.idempotency_key is None


def test_a_command_the_state_does_not_allow_is_a_conflict_naming_the_state(
    client: Client,
) -> None:
    workflow_id = client.start("finished", auto_start=False).workflow_id
    client.cancel(workflow_id)

    with pytest.raises(Conflict) as raised:
        client.next(workflow_id)

    assert (raised.value.status, raised.value.code) == (409, "invalid_transition")
    assert raised.value.detail == (
        f"workflow {workflow_id} is CANCELLED; cannot next; allowed: edit, delete (it has finished)"
    )


def test_an_invalid_body_is_a_validation_failure_naming_the_field_and_records_nothing(
    client: Client,
) -> None:
    with pytest.raises(ValidationFailed) as raised:
        client.start("")

    assert (raised.value.status, raised.value.code) == (422, "validation_error")
    assert "$.name" in raised.value.detail
    assert client.list() == []


def test_an_invalid_query_is_a_validation_failure_naming_the_parameter(client: Client) -> None:
    with pytest.raises(ValidationFailed) as raised:
        client.list(limit=5000)

    assert "limit" in raised.value.detail


def test_without_the_token_a_protected_server_refuses_and_records_nothing(
    start_server: StartServer,
) -> None:
    server = start_server(API_TOKEN=TOKEN)

    with Client(server.base_url, retry=QUICK) as anonymous:
        with pytest.raises(Unauthorized) as listing:
            anonymous.list()
        with pytest.raises(Unauthorized) as starting:
            anonymous.start("sneaky")
        health = anonymous.health()  # /health stays open, with the reason withheld
    with (
        Client(server.base_url, token="wrong-token-0123456789", retry=QUICK) as wrong,
        pytest.raises(Unauthorized),
    ):
        wrong.stats()
    with Client(server.base_url, token=TOKEN, retry=QUICK) as member:
        workflows = member.list()

    assert (listing.value.status, listing.value.code) == (401, "unauthorized")
    assert starting.value.code == "unauthorized"
    assert health.status == "healthy"
    assert workflows == []


def test_with_the_token_every_kind_of_request_goes_through(start_server: StartServer) -> None:
    server = start_server(API_TOKEN=TOKEN)

    with Client(server.base_url, token=TOKEN, retry=QUICK) as member:
        workflow_id = member.start("allowed").workflow_id
        workflow = member.wait(workflow_id, timeout=15)
        page = member.events()
        with member.stream(after=0) as events:
            first = next(events)

    assert workflow.status == "COMPLETE"
    assert page.head == workflow.version
    assert (first.position, first.type) == (1, "WorkflowStarted")


def test_a_token_that_http_cannot_carry_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="token"):
        Client("http://127.0.0.1:9", token=" padded ")
