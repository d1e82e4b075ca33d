"""A store that fails for a moment, on a write or on a read, does not lose a workflow."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.testclient import TestClient

from orchestrator.eventstore.base import AppendResult, NewEvent
from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.eventstore.keys import IdempotencyClaim
from orchestrator.eventstore.leases import Fence
from orchestrator.http.app import runtime_of


def test_an_outcome_the_store_fails_to_record_is_recorded_on_a_later_attempt(
    app: Starlette,
    client: TestClient,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    store = runtime_of(app).store
    real_append = store.append
    failures = {"left": 2}

    async def flaky_append(
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        idempotency: IdempotencyClaim | None = None,
        fence: Fence | None = None,
    ) -> AppendResult:
        if any(event.type == "StepSucceeded" for event in events) and failures["left"]:
            failures["left"] -= 1
            raise StoreUnavailable("disk briefly full")
        return await real_append(
            stream_id, expected_version, events, idempotency=idempotency, fence=fence
        )

    store.append = flaky_append  # type: ignore[method-assign]
    workflow_id = start({"name": "survives"})

    body = settle(workflow_id)

    assert failures["left"] == 0
    assert body["status"] == "COMPLETE"
    assert [t["to_state"] for t in body["transitions"]] == [
        "PREPARE",
        "EXECUTE",
        "VALIDATE",
        "COMPLETE",
    ]


def test_a_driver_whose_read_of_the_workflow_fails_once_still_completes_it(
    app: Starlette,
    client: TestClient,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    service = runtime_of(app).service
    real_load = service.load
    failures = {"left": 1}

    async def flaky_load(aggregate_id: int, *, fresh: bool = False) -> Any:
        if fresh and failures["left"]:
            failures["left"] -= 1
            raise StoreUnavailable("database is locked")
        return await real_load(aggregate_id, fresh=fresh)

    # A retry's driver starts by reading the workflow (a start's driver knows it already).
    workflow_id = start(
        {
            "name": "survives a failed read",
            "config": {"simulate_failure": True, "fail_until_retry": 1},
        }
    )
    assert settle(workflow_id)["status"] == "FAILED"
    service.load = flaky_load  # type: ignore[method-assign]
    assert client.post(f"/workflow/{workflow_id}/retry").status_code == 200

    body = settle(workflow_id)

    assert failures["left"] == 0
    assert body["status"] == "COMPLETE"
