"""The command service hands an Idempotency-Key to the one append that records its command.

Run on every backend: the key lands with the first append made inside `claiming`, in its
events' metadata and in the key's row; later appends in the same context (the engine's, from
drivers the request started) never carry it; a refused command records no key.
"""

from __future__ import annotations

import pytest

from orchestrator.domain.commands import BeginStep, CancelWorkflow, RetryWorkflow, StartWorkflow
from orchestrator.domain.errors import InvalidTransition
from orchestrator.engine.claims import claiming, unrecorded_claim
from orchestrator.engine.service import WORKFLOW_KIND, WorkflowService
from orchestrator.eventstore.base import EventStore
from orchestrator.eventstore.keys import IdempotencyClaim

CLAIM = IdempotencyClaim(key="start-1", request_hash=b"h" * 32, created_at=50.0)
API = {"actor": "api"}


def start(name: str = "w") -> StartWorkflow:
    """A manual workflow's creation command (the service picks the id)."""
    return StartWorkflow(workflow_id=0, name=name, auto_start=False)


@pytest.mark.anyio
async def test_the_first_append_of_a_command_records_its_key(store: EventStore) -> None:
    service = WorkflowService(WORKFLOW_KIND, store)

    with claiming(CLAIM) as pending:
        outcome = await service.create(start(), API, [BeginStep(task="initialize")])

    record = await store.read_idempotency("start-1")
    assert record is not None
    assert (record.stream_id, record.version, record.position) == ("workflow-1", 2, 2)
    assert pending.recorded == record
    assert outcome.workflow.version == 2
    events = await store.read_stream("workflow-1")
    assert [e.metadata.get("idempotency_key") for e in events] == ["start-1", "start-1"]


@pytest.mark.anyio
async def test_later_appends_in_the_same_context_do_not_carry_the_key(store: EventStore) -> None:
    service = WorkflowService(WORKFLOW_KIND, store)

    with claiming(CLAIM):
        await service.create(start(), API)
        assert unrecorded_claim() is None
        await service.execute(1, CancelWorkflow(), {"actor": "engine"})

    record = await store.read_idempotency("start-1")
    assert record is not None and record.version == 1
    events = await store.read_stream("workflow-1")
    assert [e.metadata.get("idempotency_key") for e in events] == ["start-1", None]


@pytest.mark.anyio
async def test_a_refused_command_records_no_key(store: EventStore) -> None:
    service = WorkflowService(WORKFLOW_KIND, store)
    await service.create(start(), API)

    with claiming(CLAIM) as pending, pytest.raises(InvalidTransition):
        await service.execute(1, RetryWorkflow(), API)  # INIT is not FAILED

    assert pending.recorded is None
    assert await store.read_idempotency("start-1") is None
    assert await store.head_position() == 1


@pytest.mark.anyio
async def test_outside_claiming_no_append_records_a_key(store: EventStore) -> None:
    service = WorkflowService(WORKFLOW_KIND, store)

    await service.create(start(), API)

    assert unrecorded_claim() is None
    assert await store.read_idempotency("start-1") is None
    assert "idempotency_key" not in (await store.read_stream("workflow-1"))[0].metadata
