"""What the services' aggregate cache charges: an aggregate's whole stream, however the cache
changed while an append was awaited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import pytest

from orchestrator.domain.commands import CancelWorkflow, StartWorkflow
from orchestrator.engine.service import WORKFLOW_KIND, WorkflowService
from orchestrator.eventstore.base import AppendResult, NewEvent
from orchestrator.eventstore.keys import IdempotencyClaim
from orchestrator.eventstore.leases import Fence
from orchestrator.eventstore.memory import InMemoryEventStore

API = {"actor": "api"}


class StoreThatWaitsMidAppend(InMemoryEventStore):
    """Runs `meanwhile` (other requests using the cache) before each append."""

    meanwhile: Callable[[], Awaitable[object]] | None = None

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        idempotency: IdempotencyClaim | None = None,
        fence: Fence | None = None,
    ) -> AppendResult:
        if self.meanwhile is not None:
            await self.meanwhile()
        return await super().append(
            stream_id, expected_version, events, idempotency=idempotency, fence=fence
        )


@pytest.mark.anyio
async def test_an_aggregate_evicted_during_its_append_is_charged_its_whole_stream() -> None:
    store = StoreThatWaitsMidAppend()
    service = WorkflowService(WORKFLOW_KIND, store, cache_size=1)
    big = {"blob": "x" * 100_000}
    await service.create(
        StartWorkflow(workflow_id=0, name="big", config=big, auto_start=False), API
    )
    await service.create(StartWorkflow(workflow_id=0, name="small", auto_start=False), API)
    await service.load(1)  # workflow 1 is cached, charged its 100 KB config

    async def load_the_other() -> None:  # evicts workflow 1 (one entry fits)
        await service.load(2)

    store.meanwhile = load_the_other
    await service.execute(1, CancelWorkflow(), {"actor": "engine"})
    store.meanwhile = None

    fresh = WorkflowService(WORKFLOW_KIND, store)
    await fresh.load(1)
    assert service._cache.size_of(1) == fresh._cache.size_of(1) > 100_000
    assert service._cache.bytes == fresh._cache.bytes
