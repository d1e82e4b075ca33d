"""CACHE_MEMORY_MB bounds every in-process cache together: however many workflows pass, what the
services and the projector keep stays within their shares of it."""

from __future__ import annotations

import pytest

from orchestrator.domain.commands import StartWorkflow
from orchestrator.domain.states import State
from orchestrator.engine.tasks import TaskRegistry
from orchestrator.sized_cache import CacheBudget
from tests.engine.harness import engine_settings, quiesce, running

pytestmark = pytest.mark.anyio


def test_the_shares_add_up_to_the_budget() -> None:
    budget = CacheBudget(64)
    parts = (budget.read_models, budget.workflows, budget.tasks, budget.encoded_reads)
    assert sum(parts) == 64 * 1024 * 1024
    assert all(part > 0 for part in parts)


async def test_a_small_budget_holds_however_many_workflows_pass(registry: TaskRegistry) -> None:
    settings = engine_settings(cache_memory_mb=1)
    budget = CacheBudget(1)
    big = {"blob": "x" * 20_000}  # ~20 KB a workflow: 200 of them are 4 MB, four budgets
    async with running(settings, registry) as runtime:
        for index in range(200):
            await runtime.coordinator.start(
                StartWorkflow(workflow_id=0, name=f"w{index}", config=big)
            )
        await quiesce(runtime)
        await runtime.projector.wait_for(await runtime.store.head_position())
        assert runtime.service._cache.bytes <= budget.workflows
        assert runtime.projector._cache.bytes <= budget.read_models
        # Evicted, not lost: the oldest still reads whole, from the log and the read models.
        oldest = await runtime.projector.workflow(1)
        assert oldest is not None and oldest.state is State.COMPLETE
        assert oldest.config == big
        assert runtime.projector.stats()["COMPLETE"] == 200
