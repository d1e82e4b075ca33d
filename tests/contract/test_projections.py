"""The projector keeps the workflow read models and stats from the log, with either storage.

Every test runs with each backend's projection storage over its own store (memory; SQLite in the
log's file; PostgreSQL in the log's schema), as the runtime wires them. The log is filled with
real workflow events through the command service, and the read models are checked against `fold`
of each stream: the one definition of a workflow's state.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.domain.aggregates import WORKFLOW
from orchestrator.domain.commands import (
    AdvanceWorkflow,
    BeginStep,
    CancelWorkflow,
    Command,
    CreateWorkflow,
    DeleteWorkflow,
    FailStep,
    FinishStep,
    LaunchWorkflow,
    RetryWorkflow,
    StartWorkflow,
)
from orchestrator.domain.events import decode_event
from orchestrator.domain.states import State
from orchestrator.domain.workflow import Workflow
from orchestrator.engine.service import WORKFLOW_KIND, WorkflowService
from orchestrator.eventstore.base import EventStore, RecordedEvent
from orchestrator.projections.models import WORKFLOWS
from orchestrator.projections.projector import Projector
from orchestrator.projections.storage import ProjectionStorage
from tests.contract.conftest import BACKENDS, make_storage

PROMPT = 5.0
META = {"actor": "contract-test"}
TASK_OF = {
    State.INIT: "initialize",
    State.PREPARE: "prepare",
    State.EXECUTE: "execute",
    State.VALIDATE: "validate",
    State.COMPLETE: "finalize",
}


# The log and read models under test --------------------------------------------------------------


class ReadSide:
    """A store and projection storage as one server process has them (from the factory the
    server uses); restartable on SQLite and PostgreSQL."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path
        self.backend = make_storage(kind, path.parent)
        self.store: EventStore = self.backend.store
        self.storage: ProjectionStorage = self.backend.tables.storage()
        self._projectors: list[Projector] = []
        self._extra_storages: list[ProjectionStorage] = []

    async def open(self) -> None:
        """Open the store, then the projection storage beside it."""
        await self.store.open()
        await self.storage.open()

    async def close(self) -> None:
        """Stop every projector, then close storage and store."""
        for projector in self._projectors:
            await projector.stop()
        self._projectors.clear()
        for storage in self._extra_storages:
            await storage.close()
        self._extra_storages.clear()
        await self.storage.close()
        await self.store.close()

    async def restart(self) -> None:
        """As after a process restart: new objects on the same SQLite file or PostgreSQL schema.

        In memory nothing outlives the process, so the same store and storage are kept and only
        the projectors are new.
        """
        if self.kind == "memory":
            for projector in self._projectors:
                await projector.stop()
            self._projectors.clear()
            return
        await self.close()
        self.backend = make_storage(self.kind, self.path.parent)
        self.store = self.backend.store
        self.storage = self.backend.tables.storage()
        await self.open()

    def projector(self, *, cache_size: int = 100_000) -> Projector:
        """A projector on this side's store and storage, stopped when the test ends."""
        projector = Projector(self.store, self.storage, cache_size=cache_size)
        self._projectors.append(projector)
        return projector

    async def fresh_storage(self) -> ProjectionStorage:
        """Empty projection storage beside the live one, as a rebuild fills."""
        await self.backend.tables.drop("rebuild_")
        storage = self.backend.tables.storage("rebuild_")
        await storage.open()
        self._extra_storages.append(storage)
        return storage

    def service(self) -> WorkflowService:
        """A command service appending to this side's store."""
        return WorkflowService(WORKFLOW_KIND, self.store)


@pytest.fixture(params=BACKENDS)
async def read_side(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ReadSide]:
    """Fresh, open store and projection storage of each kind, closed after the test."""
    side = ReadSide(request.param, tmp_path / "orchestrator.db")
    await side.open()
    try:
        yield side
    finally:
        await side.close()


# Filling the log with real workflows -------------------------------------------------------------


async def start(service: WorkflowService, *, auto: bool = True) -> int:
    """A new workflow in INIT; its id."""
    command = StartWorkflow(workflow_id=0, name="contract", config={"n": 1}, auto_start=auto)
    outcome = await service.create(command, META)
    return outcome.workflow.workflow_id


async def create(service: WorkflowService) -> int:
    """A workflow that waits in INIT to be launched; its id."""
    outcome = await service.create(CreateWorkflow(workflow_id=0, name="waiting"), META)
    return outcome.workflow.workflow_id


async def do(service: WorkflowService, workflow_id: int, *commands: Command) -> None:
    """Carry out `commands` one after another."""
    for command in commands:
        await service.execute(workflow_id, command, META)


async def begin(service: WorkflowService, workflow_id: int, *, manual: bool = False) -> State:
    """Start the task of the workflow's current state; the state."""
    workflow = await service.load(workflow_id)
    assert workflow is not None
    task = TASK_OF[workflow.state]
    await do(service, workflow_id, AdvanceWorkflow(task=task) if manual else BeginStep(task=task))
    return workflow.state


async def steps(
    service: WorkflowService, workflow_id: int, count: int, *, manual: bool = False
) -> None:
    """Run `count` steps that succeed (the last one past VALIDATE is finalize)."""
    for _ in range(count):
        state = await begin(service, workflow_id, manual=manual)
        await do(service, workflow_id, FinishStep(state=state, result={"ran": state.value}))


async def fail(service: WorkflowService, workflow_id: int) -> None:
    """Run one step that fails."""
    state = await begin(service, workflow_id)
    await do(service, workflow_id, FailStep(state=state, error="boom"))


async def fresh(s: WorkflowService) -> int:
    return await start(s)


async def step_running(s: WorkflowService) -> int:
    i = await start(s)
    await begin(s, i)
    return i


async def mid_run(s: WorkflowService) -> int:
    i = await start(s)
    await steps(s, i, 2)
    return i


async def awaiting_finalize(s: WorkflowService) -> int:
    i = await start(s)
    await steps(s, i, 4)
    return i


async def finished(s: WorkflowService) -> int:
    i = await start(s)
    await steps(s, i, 5)
    return i


async def manual_idle(s: WorkflowService) -> int:
    i = await start(s, auto=False)
    await steps(s, i, 1, manual=True)
    return i


async def manual_step_running(s: WorkflowService) -> int:
    i = await start(s, auto=False)
    await begin(s, i, manual=True)
    return i


async def created(s: WorkflowService) -> int:
    return await create(s)


async def launched(s: WorkflowService) -> int:
    i = await create(s)
    await do(s, i, LaunchWorkflow())
    return i


async def failed(s: WorkflowService) -> int:
    i = await start(s)
    await steps(s, i, 1)
    await fail(s, i)
    return i


async def retried(s: WorkflowService) -> int:
    i = await failed(s)
    await do(s, i, RetryWorkflow())
    return i


async def cancelled_mid_step(s: WorkflowService) -> int:
    i = await start(s)
    await begin(s, i)
    await do(s, i, CancelWorkflow())
    return i


async def deleted_after_failing(s: WorkflowService) -> int:
    i = await failed(s)
    await do(s, i, DeleteWorkflow())
    return i


async def deleted_after_finishing(s: WorkflowService) -> int:
    i = await finished(s)
    await do(s, i, DeleteWorkflow())
    return i


Scenario = Callable[[WorkflowService], Awaitable[int]]

#: Each scenario, the state it leaves its workflow in, and whether the engine must resume it.
SCENARIOS: list[tuple[Scenario, State, bool]] = [
    (fresh, State.INIT, True),
    (step_running, State.INIT, True),
    (mid_run, State.EXECUTE, True),
    (awaiting_finalize, State.COMPLETE, True),
    (finished, State.COMPLETE, False),
    (manual_idle, State.PREPARE, False),
    (manual_step_running, State.INIT, True),
    (created, State.INIT, False),
    (launched, State.INIT, True),
    (failed, State.FAILED, False),
    (retried, State.INIT, True),
    (cancelled_mid_step, State.CANCELLED, False),
    (deleted_after_failing, State.FAILED, False),
    # Last, so that the highest id belongs to a deleted workflow.
    (deleted_after_finishing, State.COMPLETE, False),
]


async def run_scenarios(service: WorkflowService) -> dict[str, int]:
    """Every scenario once, in order; the workflow id of each by scenario name."""
    return {scenario.__name__: await scenario(service) for scenario, _, _ in SCENARIOS}


async def folded_workflows(store: EventStore) -> dict[int, Workflow]:
    """Each workflow as `fold` of its stream, straight from the log."""
    streams: dict[str, list[RecordedEvent]] = {}
    for recorded in await store.read_all(0, limit=1_000_000):
        streams.setdefault(recorded.stream_id, []).append(recorded)
    folded: dict[int, Workflow] = {}
    for stream, events in streams.items():
        workflow = WORKFLOW.fold(decode_event(e.data) for e in events)
        assert workflow is not None
        assert stream == f"workflow-{workflow.workflow_id}"
        folded[workflow.workflow_id] = workflow
    return folded


def counted_by_state(workflows: dict[int, Workflow]) -> dict[str, int]:
    """Workflows by state name, deleted ones left out, every state present."""
    counts = Counter(w.state.value for w in workflows.values() if not w.deleted)
    return {state.value: counts[state.value] for state in State}


async def stored_workflows(storage: ProjectionStorage, ids: Sequence[int]) -> dict[int, Workflow]:
    """The rows storage holds for `ids`, decoded."""
    rows = await storage.load_rows(WORKFLOWS.kind, ids)
    return {i: WORKFLOWS.decode_state(data) for i, data in rows.items()}


def nonzero(counters: dict[str, int]) -> dict[str, int]:
    """The counters that are not zero."""
    return {name: count for name, count in counters.items() if count}


def record_where_log_reads_begin(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, the `after` of each read of the log in position order (`store.read_all`
    and `read_for_folding`) is appended to the returned list."""
    reads_after: list[int] = []
    for name in ("read_all", "read_for_folding"):
        read = getattr(store, name)

        async def recording(after: int = 0, *args: Any, read: Any = read, **kwargs: Any) -> Any:
            reads_after.append(after)
            return await read(after, *args, **kwargs)

        monkeypatch.setattr(store, name, recording)
    return reads_after


# The read model ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_each_workflows_read_model_equals_the_fold_of_its_stream(
    read_side: ReadSide,
) -> None:
    ids = await run_scenarios(read_side.service())
    projector = read_side.projector()

    await projector.start(follow=False)

    expected = await folded_workflows(read_side.store)
    assert sorted(expected) == sorted(ids.values())
    for name, workflow_id in ids.items():
        assert await projector.workflow(workflow_id) == expected[workflow_id], name
    assert await stored_workflows(read_side.storage, list(expected)) == expected
    # A projector with an empty cache reads the stored rows, which say the same.
    cold = read_side.projector()
    for workflow_id, workflow in expected.items():
        assert await cold.workflow(workflow_id) == workflow
    assert await projector.workflow(max(expected) + 1) is None


@pytest.mark.anyio
async def test_each_scenario_leaves_its_workflow_in_the_expected_state(
    read_side: ReadSide,
) -> None:
    ids = await run_scenarios(read_side.service())
    projector = read_side.projector()

    await projector.start(follow=False)

    for scenario, state, _ in SCENARIOS:
        workflow = await projector.workflow(ids[scenario.__name__])
        assert workflow is not None
        assert workflow.state is state, scenario.__name__
        assert workflow.deleted == scenario.__name__.startswith("deleted")


@pytest.mark.anyio
async def test_stats_count_workflows_by_state_and_leave_out_deleted_ones(
    read_side: ReadSide,
) -> None:
    await run_scenarios(read_side.service())
    projector = read_side.projector()

    await projector.start(follow=False)

    expected = counted_by_state(await folded_workflows(read_side.store))
    assert projector.stats() == expected
    live = sum(not scenario.__name__.startswith("deleted") for scenario, _, _ in SCENARIOS)
    assert sum(expected.values()) == live
    assert expected == {
        "INIT": 6,
        "PREPARE": 1,
        "EXECUTE": 1,
        "VALIDATE": 0,
        "COMPLETE": 2,
        "FAILED": 1,
        "CANCELLED": 1,
    }
    stored = await read_side.storage.load_counters()
    assert nonzero(stored) == {f"workflow:{s}": n for s, n in expected.items() if n}


@pytest.mark.anyio
async def test_deleting_a_workflow_takes_it_out_of_the_stats(read_side: ReadSide) -> None:
    service = read_side.service()
    ids = await run_scenarios(service)
    projector = read_side.projector()
    await projector.start(follow=False)
    before = projector.stats()

    await do(service, ids["failed"], DeleteWorkflow())
    await do(service, ids["cancelled_mid_step"], DeleteWorkflow())
    await projector.catch_up()

    after = projector.stats()
    assert after == {
        **before,
        "FAILED": before["FAILED"] - 1,
        "CANCELLED": before["CANCELLED"] - 1,
    }
    assert after == counted_by_state(await folded_workflows(read_side.store))
    deleted = await projector.workflow(ids["failed"])
    assert deleted is not None and deleted.deleted


@pytest.mark.anyio
async def test_stats_and_rows_stay_right_over_a_log_longer_than_one_batch(
    read_side: ReadSide,
) -> None:
    service = read_side.service()

    async def run_to_completion() -> None:
        workflow_id = await start(service)
        await steps(service, workflow_id, 5)

    # Run concurrently, so the streams interleave in the log (and SQLite commits in groups).
    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            for _ in range(200):
                group.start_soon(run_to_completion)
    head = await read_side.store.head_position()
    assert head > 2000, "the log should need more than one of the projector's batches"
    # A tiny cache makes the projector load rows back from storage between batches.
    projector = read_side.projector(cache_size=8)

    await projector.start(follow=False)

    assert projector.position == head
    expected = await folded_workflows(read_side.store)
    assert (
        projector.stats()
        == counted_by_state(expected)
        == {
            **dict.fromkeys((s.value for s in State), 0),
            "COMPLETE": 200,
        }
    )
    assert await stored_workflows(read_side.storage, list(expected)) == expected


# Checkpoint and resuming --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_checkpoint_is_stored_with_the_read_models(read_side: ReadSide) -> None:
    assert await read_side.storage.load_checkpoint() == 0
    await run_scenarios(read_side.service())
    projector = read_side.projector()

    await projector.start(follow=False)

    head = await read_side.store.head_position()
    assert projector.position == head
    assert await read_side.storage.load_checkpoint() == head


@pytest.mark.anyio
async def test_a_new_projector_resumes_from_the_checkpoint_without_counting_twice(
    read_side: ReadSide, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await run_scenarios(read_side.service())
    first = read_side.projector()
    await first.start(follow=False)
    checkpoint = await read_side.storage.load_checkpoint()
    stats_before = first.stats()

    await read_side.restart()
    reads_after = record_where_log_reads_begin(read_side.store, monkeypatch)
    second = read_side.projector()
    await second.start(follow=False)

    assert reads_after[0] == checkpoint, "it must read on from the checkpoint, not from 0"
    assert second.position == checkpoint
    assert second.stats() == stats_before

    service = read_side.service()
    service.reserve_ids_after(await second.max_id(WORKFLOWS))
    await steps(service, ids["fresh"], 2)
    await do(service, ids["cancelled_mid_step"], DeleteWorkflow())
    newcomer = await finished(service)
    await second.catch_up()

    expected = await folded_workflows(read_side.store)
    assert newcomer == max(expected)
    assert second.stats() == counted_by_state(expected)
    assert nonzero(await read_side.storage.load_counters()) == {
        f"workflow:{s}": n for s, n in counted_by_state(expected).items() if n
    }
    assert await stored_workflows(read_side.storage, list(expected)) == expected
    assert await read_side.storage.load_checkpoint() == await read_side.store.head_position()


@pytest.mark.anyio
async def test_rebuilding_into_empty_storage_yields_the_same_read_models(
    read_side: ReadSide,
) -> None:
    await run_scenarios(read_side.service())
    live = read_side.projector()
    await live.start(follow=False)
    rebuilt_storage = await read_side.fresh_storage()
    rebuilt = Projector(read_side.store, rebuilt_storage)

    await rebuilt.start(follow=False)

    ids = sorted(await folded_workflows(read_side.store))
    assert await stored_workflows(rebuilt_storage, ids) == await stored_workflows(
        read_side.storage, ids
    )
    assert nonzero(await rebuilt_storage.load_counters()) == nonzero(
        await read_side.storage.load_counters()
    )
    assert rebuilt.stats() == live.stats()
    assert await rebuilt_storage.load_checkpoint() == await read_side.storage.load_checkpoint()
    assert await rebuilt.ids_needing_engine(WORKFLOWS) == await live.ids_needing_engine(WORKFLOWS)


@pytest.mark.anyio
async def test_a_stores_reads_for_folding_carry_what_read_all_gives(read_side: ReadSide) -> None:
    """What a store reads for a fold (the projector's reads) gives every event's position,
    stream, version, type, payload and schema version as read_all does."""
    await run_scenarios(read_side.service())
    read_for_folding = read_side.store.read_for_folding
    head = await read_side.store.head_position()
    assert head > 20
    for after, limit in ((0, 1000), (5, 7), (head - 3, 10), (head, 10)):
        light = await read_for_folding(after, limit)
        whole = await read_side.store.read_all(after, limit)
        assert [
            (e.position, e.stream_id, e.version, e.type, e.data, e.schema_version) for e in light
        ] == [(e.position, e.stream_id, e.version, e.type, e.data, e.schema_version) for e in whole]


# Reading one's own writes -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_wait_for_returns_once_the_position_is_applied(read_side: ReadSide) -> None:
    projector = read_side.projector()
    await projector.start()
    service = read_side.service()

    started = await service.create(StartWorkflow(workflow_id=0, name="seen"), META)
    with anyio.fail_after(PROMPT):
        await projector.wait_for(started.position, timeout=PROMPT)
    workflow_id = started.workflow.workflow_id
    assert projector.position >= started.position
    assert await projector.workflow(workflow_id) == started.workflow

    stepped = await service.execute(workflow_id, BeginStep(task="initialize"), META)
    with anyio.fail_after(PROMPT):
        await projector.wait_for(stepped.position, timeout=PROMPT)
    seen = await projector.workflow(workflow_id)
    assert seen is not None and seen.step is State.INIT
    assert seen == stepped.workflow


@pytest.mark.anyio
async def test_wait_for_a_position_already_applied_returns_at_once(read_side: ReadSide) -> None:
    await run_scenarios(read_side.service())
    projector = read_side.projector()
    await projector.start(follow=False)

    with anyio.fail_after(PROMPT):
        await projector.wait_for(projector.position, timeout=PROMPT)
        await projector.wait_for(1, timeout=PROMPT)

    assert projector.position == await read_side.store.head_position()


@pytest.mark.anyio
async def test_wait_for_a_position_never_reached_times_out(read_side: ReadSide) -> None:
    await start(read_side.service())
    projector = read_side.projector()
    await projector.start()
    head = await read_side.store.head_position()

    with anyio.fail_after(PROMPT), pytest.raises(TimeoutError, match=f"position {head + 1}"):
        await projector.wait_for(head + 1, timeout=0.2)

    assert projector.position == head


@pytest.mark.anyio
async def test_waiters_for_several_positions_each_wake_once_theirs_is_applied(
    read_side: ReadSide,
) -> None:
    """Readers wait for positions out of order; each returns when its position is applied and
    not before, and ones that gave up (timed out, cancelled) are not kept."""
    projector = read_side.projector()
    await projector.start()
    service = read_side.service()
    head = await read_side.store.head_position()
    given_up = [
        asyncio.ensure_future(projector.wait_for(head + 1000, timeout=0.05)),
        asyncio.ensure_future(projector.wait_for(head + 1000, timeout=PROMPT)),
    ]
    waiting = {
        offset: asyncio.ensure_future(projector.wait_for(head + offset, timeout=PROMPT))
        for offset in (3, 1, 2)
    }
    await asyncio.sleep(0.1)
    given_up[1].cancel()
    with pytest.raises(TimeoutError):
        await given_up[0]
    assert not any(w.done() for w in waiting.values())

    created = await service.create(StartWorkflow(workflow_id=0, name="w1"), META)  # 1 event
    with anyio.fail_after(PROMPT):
        await waiting[1]
    assert projector.position >= head + 1
    workflow_id = created.workflow.workflow_id
    await service.execute(workflow_id, BeginStep(task="initialize"), META)
    await service.execute(workflow_id, CancelWorkflow(), META)
    with anyio.fail_after(PROMPT):
        await asyncio.gather(waiting[2], waiting[3])
    assert projector.position >= head + 3
    assert all(waiter.done() for _, _, waiter in projector._waiters)


@pytest.mark.anyio
async def test_waiters_that_give_up_are_not_kept(read_side: ReadSide) -> None:
    """A projector that does not move (a stuck disk, say) while commands keep waiting on it:
    the ones that timed out or were cancelled do not pile up in memory."""
    projector = read_side.projector()
    await projector.start()
    far = await read_side.store.head_position() + 1_000_000
    timing_out = [
        asyncio.ensure_future(projector.wait_for(far, timeout=0.05 + n / 10_000))
        for n in range(300)
    ]
    cancelled = [asyncio.ensure_future(projector.wait_for(far, timeout=PROMPT)) for _ in range(50)]
    await asyncio.sleep(0)
    assert len(projector._waiters) == 350
    for waiter in cancelled:
        waiter.cancel()
    results = await asyncio.gather(*timing_out, *cancelled, return_exceptions=True)

    assert all(isinstance(r, TimeoutError) for r in results[:300])
    assert all(isinstance(r, asyncio.CancelledError) for r in results[300:])
    assert len(projector._waiters) <= 1  # dropped in bulk as they gave up


# What the engine resumes, and ids -----------------------------------------------------------------


@pytest.mark.anyio
async def test_workflows_with_a_step_running_or_automatic_and_unfinished_need_the_engine(
    read_side: ReadSide,
) -> None:
    ids = await run_scenarios(read_side.service())
    projector = read_side.projector()

    await projector.start(follow=False)

    expected = sorted(ids[s.__name__] for s, _, needs_engine in SCENARIOS if needs_engine)
    assert await projector.ids_needing_engine(WORKFLOWS) == expected
    # After a restart the answer comes from storage alone.
    await read_side.restart()
    restarted = read_side.projector()
    await restarted.start(follow=False)
    assert await restarted.ids_needing_engine(WORKFLOWS) == expected


@pytest.mark.anyio
async def test_a_workflow_stops_needing_the_engine_once_it_finishes(read_side: ReadSide) -> None:
    service = read_side.service()
    workflow_id = await start(service)
    projector = read_side.projector()
    await projector.start(follow=False)
    assert await projector.ids_needing_engine(WORKFLOWS) == [workflow_id]

    await steps(service, workflow_id, 5)
    await projector.catch_up()

    assert await projector.ids_needing_engine(WORKFLOWS) == []


@pytest.mark.anyio
async def test_max_id_is_the_highest_workflow_id_projected_deleted_ones_included(
    read_side: ReadSide,
) -> None:
    projector = read_side.projector()
    await projector.start(follow=False)
    assert await projector.max_id(WORKFLOWS) == 0

    ids = await run_scenarios(read_side.service())
    await projector.catch_up()

    highest = ids["deleted_after_finishing"]
    assert highest == max(ids.values())
    assert await projector.max_id(WORKFLOWS) == highest
    deleted = await projector.workflow(highest)
    assert deleted is not None and deleted.deleted


# Several projectors on one storage (several server processes on one database) --------------------


@pytest.mark.anyio
async def test_two_projectors_sharing_storage_never_count_an_event_twice(
    read_side: ReadSide,
) -> None:
    service = read_side.service()
    ids = await run_scenarios(service)
    first, second = read_side.projector(), read_side.projector()
    await first.start(follow=False)
    await second.start(follow=False)

    await steps(service, ids["fresh"], 3)
    await do(service, ids["failed"], RetryWorkflow())
    await first.catch_up()
    await second.catch_up()  # finds the checkpoint moved on under it, and reloads
    await finished(service)
    await second.catch_up()
    await first.catch_up()

    expected = counted_by_state(await folded_workflows(read_side.store))
    head = await read_side.store.head_position()
    assert nonzero(await read_side.storage.load_counters()) == {
        f"workflow:{s}": n for s, n in expected.items() if n
    }
    assert await read_side.storage.load_checkpoint() == head
    assert first.stats() == second.stats() == expected
    assert first.position == second.position == head


@pytest.mark.anyio
async def test_both_projectors_sharing_storage_wake_their_waiters_promptly(
    read_side: ReadSide,
) -> None:
    first, second = read_side.projector(), read_side.projector()
    await first.start()
    await second.start()
    head = await read_side.store.head_position()
    # Both wait before the append: whichever projector saves second has to reload, and its
    # waiter must still be woken, not left to its 30 s timeout.
    waiters = [
        asyncio.create_task(projector.wait_for(head + 1, timeout=30.0))
        for projector in (first, second)
    ]
    await anyio.wait_all_tasks_blocked()  # the waiters and both projectors are parked now
    assert not any(waiter.done() for waiter in waiters)

    try:
        await start(read_side.service())
        with anyio.fail_after(2.0):  # "promptly": far below the waiters' own 30 s timeout
            await asyncio.gather(*waiters)
    finally:
        for waiter in waiters:
            waiter.cancel()

    assert first.position == second.position == head + 1
