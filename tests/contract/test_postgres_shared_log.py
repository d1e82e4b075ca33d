"""Several runtimes on one PostgreSQL log, in one test process (each as a server process would
have it: its own pool, leases, projector): they share the work without running a step twice,
one of them writes the read models and the others follow, a runtime presumed dead is fenced
off, and a stopping one hands its work over at once. The same with real server processes and
SIGKILL is tests/e2e/test_two_servers.py."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from orchestrator.domain.commands import (
    AdvanceWorkflow,
    CreateWorkflow,
    EditWorkflow,
    StartWorkflow,
)
from orchestrator.domain.states import State
from orchestrator.domain.workflow import Workflow
from orchestrator.engine.tasks import TaskContext, TaskRegistry
from orchestrator.eventstore.base import NewEvent
from orchestrator.eventstore.errors import LeaseLost
from orchestrator.eventstore.leases import Fence
from orchestrator.runtime import Runtime, build_runtime
from orchestrator.settings import Settings, parse_database
from tests.contract.conftest import connect_to_schema, postgres_url
from tests.engine.fake_tasks import Calls, Gate, registry_of, task_name
from tests.engine.harness import FULL_LIFE, workflow_lines
from tests.waiting import wait_for_async

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

DEADLINE = 15.0


def shared_settings(url: str, **overrides: Any) -> Settings:
    return Settings(database_url=url, task_time_scale=0, log_file="", **overrides)


async def started(url: str, registry: TaskRegistry, **overrides: Any) -> Runtime:
    runtime = build_runtime(shared_settings(url, **overrides), registry)
    await runtime.start()
    return runtime


@pytest.fixture
async def url(tmp_path: Path) -> AsyncIterator[str]:
    yield postgres_url(tmp_path)


async def sql(url: str, statement: str, *args: object) -> list[asyncpg.Record]:
    """One statement on the test's schema, outside any runtime."""
    database = parse_database(url)
    conn = await connect_to_schema(database)
    try:
        return list(await conn.fetch(statement, *args))
    finally:
        await conn.close()


async def until_state(runtime: Runtime, workflow_id: int, state: State) -> Workflow:
    async def probe() -> Workflow | None:
        return await runtime.service.load(workflow_id, fresh=True)

    found = await wait_for_async(
        probe,
        lambda w: w is not None and w.state is state and w.step is None,
        what=f"workflow {workflow_id} in {state.value}",
        timeout=DEADLINE,
    )
    assert found is not None
    return found


async def test_two_runtimes_share_one_log_and_each_workflow_runs_once(url: str) -> None:
    calls = Calls()
    one = await started(url, registry_of(calls))
    two = await started(url, registry_of(calls))
    try:
        # Exactly one of them writes the read models; the other follows.
        assert [one.projector.writing, two.projector.writing].count(True) == 1
        ids = []
        for i in range(20):
            runtime = one if i % 2 else two
            outcome = await runtime.coordinator.start(StartWorkflow(workflow_id=0, name=f"w{i}"))
            ids.append(outcome.workflow.workflow_id)
        assert len(set(ids)) == 20, "ids come from the database: never the same twice"
        for workflow_id in ids:
            await until_state(one, workflow_id, State.COMPLETE)
            assert await workflow_lines(one, workflow_id) == ["WorkflowStarted", *FULL_LIFE]
        # Five steps each, never one twice; both read models agree on the counts.
        assert len(calls.states) == 20 * 5
        for runtime in (one, two):

            async def completed(runtime: Runtime = runtime) -> int:
                return runtime.projector.stats().get("COMPLETE", 0)

            await wait_for_async(completed, lambda n: n == 20, what="stats", timeout=DEADLINE)
        rows = await sql(url, "SELECT count(*) FROM leases")
        assert rows[0][0] == 0, "a finished driver deletes its lease"
    finally:
        await two.stop()
        await one.stop()


async def test_a_write_on_one_process_is_read_on_the_other_and_by_its_own_client(
    url: str,
) -> None:
    calls = Calls()
    one = await started(url, registry_of(calls))
    two = await started(url, registry_of(calls))
    try:
        follower = two if one.projector.writing else one
        writer = one if follower is two else two
        # Read-your-writes on the follower: the answer's position is reached by its read models.
        outcome = await follower.coordinator.create(
            CreateWorkflow(workflow_id=0, name="on the follower")
        )
        await follower.projector.wait_for(outcome.position, timeout=2.0)
        seen = await follower.projector.workflow(outcome.workflow.workflow_id)
        assert seen is not None and seen.name == "on the follower"
        # A write on the writer shows on the follower within a second, cache or not.
        await follower.projector.workflow(outcome.workflow.workflow_id)  # cached there now
        edited = await writer.coordinator.edit(
            outcome.workflow.workflow_id, EditWorkflow(name="renamed on the writer")
        )
        await follower.projector.wait_for(edited.position, timeout=1.0)
        again = await follower.projector.workflow(outcome.workflow.workflow_id)
        assert again is not None and again.name == "renamed on the writer"
        assert follower.projector.stats()["INIT"] == 1
    finally:
        await two.stop()
        await one.stop()


async def test_a_stopping_runtime_hands_its_in_flight_work_over_at_once(url: str) -> None:
    calls = Calls()
    gate = Gate()
    # The first runtime's EXECUTE is held; the second runs everything at once.
    one = await started(url, registry_of(calls, EXECUTE=gate.held(calls)), lease_seconds=30)
    two = await started(url, registry_of(calls), lease_seconds=30)
    try:
        outcome = await one.coordinator.start(StartWorkflow(workflow_id=0, name="handed over"))
        workflow_id = outcome.workflow.workflow_id
        await asyncio.to_thread(gate.entered.wait, DEADLINE)
        # A graceful stop (no grace for the held step): the lease is expired and NOTIFY sent,
        # so the other runtime takes it over long before the 30 s lease would run out.
        began = asyncio.get_running_loop().time()
        await one.stop()
        await until_state(two, workflow_id, State.COMPLETE)
        assert asyncio.get_running_loop().time() - began < 10
        assert calls.count(State.EXECUTE) == 2, "run again by its new owner, as after a restart"
        events = await workflow_lines(two, workflow_id)
        assert events.count("StepSucceeded EXECUTE") == 1
    finally:
        gate.release()
        await two.stop()
        await one.stop()


async def test_a_runtime_presumed_dead_cannot_record_its_late_outcome(url: str) -> None:
    calls = Calls()
    first_gate, second_gate = Gate(), Gate()

    def held_by(gate: Gate, who: str) -> Any:
        def execute(context: TaskContext) -> dict[str, Any]:
            calls.note(context)
            gate.pass_through()
            return {"by": who}

        return execute

    # Both run EXECUTE under the same task name, each held until the test releases it.
    first_registry = registry_of(calls)
    first_registry.register(State.EXECUTE, held_by(first_gate, "first"), name="fake-execute")
    second_registry = registry_of(calls)
    second_registry.register(State.EXECUTE, held_by(second_gate, "second"), name="fake-execute")
    one = await started(url, first_registry, lease_seconds=1)
    two = await started(url, second_registry, lease_seconds=1)
    try:
        # The first runtime stops renewing (as a process paused or cut off would).
        for loop in one.ownership._loops:
            loop.cancel()
        outcome = await one.coordinator.start(StartWorkflow(workflow_id=0, name="fenced"))
        workflow_id = outcome.workflow.workflow_id
        await asyncio.to_thread(first_gate.entered.wait, DEADLINE)
        # Its lease expires; the second takes the workflow over and runs EXECUTE again.
        assert await asyncio.to_thread(second_gate.entered.wait, DEADLINE)
        # Now the first one's step returns, before the second's: without the fence its result
        # would be recorded (the stream is still at the version it read).
        before = await one.service.load(workflow_id, fresh=True)
        first_gate.release()
        await asyncio.wait_for(one.coordinator.wait_idle(), DEADLINE)
        after = await one.service.load(workflow_id, fresh=True)
        assert before is not None and after is not None and after.version == before.version
        second_gate.release()
        done = await until_state(two, workflow_id, State.COMPLETE)
        assert done.task_results["EXECUTE"] == {"by": "second"}
        assert (await workflow_lines(two, workflow_id)).count("StepSucceeded EXECUTE") == 1
    finally:
        first_gate.release()
        second_gate.release()
        await two.stop()
        await one.stop()


async def test_an_append_fenced_by_a_lost_lease_is_refused_and_changes_nothing(url: str) -> None:
    runtime = await started(url, registry_of(Calls()))
    try:
        leases = runtime.backend.leases
        assert leases is not None
        epoch = await leases.acquire("workflow", 99, "old-holder", 60)
        assert epoch == 1
        # Not expired: another holder cannot take it.
        assert await leases.acquire("workflow", 99, "new-holder", 60) is None
        await sql(url, "UPDATE leases SET expires_at = now() - interval '1 second'")
        assert await leases.acquire("workflow", 99, "new-holder", 60) == 2
        event = NewEvent(type="Probe", data=b"{}", metadata={})
        head = await runtime.store.head_position()
        with pytest.raises(LeaseLost):
            await runtime.store.append(
                "probe-99", 0, [event], fence=Fence("workflow", 99, "old-holder", 1)
            )
        assert await runtime.store.head_position() == head
        result = await runtime.store.append(
            "probe-99", 0, [event], fence=Fence("workflow", 99, "new-holder", 2)
        )
        assert result.version == 1
    finally:
        await runtime.stop()


async def test_a_step_whose_task_only_another_process_has_is_left_to_it(url: str) -> None:
    calls = Calls()
    entered = threading.Event()

    def special(context: TaskContext) -> dict[str, Any]:
        entered.set()
        return {"ran": "special"}

    with_special = registry_of(calls)
    with_special.register(State.EXECUTE, special, name="special-execute")
    # The runtime without the special task starts the workflow, whose EXECUTE step is begun by
    # the one that has it (its BeginStep names "special-execute").
    plain = await started(url, registry_of(calls), lease_seconds=1)
    special_runtime = await started(url, with_special, lease_seconds=1)
    try:
        outcome = await special_runtime.coordinator.start(
            StartWorkflow(workflow_id=0, name="special", auto_start=False)
        )
        workflow_id = outcome.workflow.workflow_id
        await special_runtime.coordinator.advance(workflow_id)  # INIT
        await special_runtime.coordinator.advance(workflow_id)  # PREPARE
        # A `next` on EXECUTE recorded by the special runtime, whose driver the plain one
        # happens to start first (as a takeover would).
        await special_runtime.service.execute(
            workflow_id, AdvanceWorkflow(task="special-execute"), {"actor": "test"}
        )
        plain.coordinator.drive(workflow_id)
        await wait_for_async(
            lambda: asyncio.sleep(0, plain.coordinator.is_driving(workflow_id)),
            lambda driving: not driving,
            what="the plain runtime to leave it",
            timeout=DEADLINE,
        )
        special_runtime.coordinator.drive(workflow_id)
        await asyncio.to_thread(entered.wait, DEADLINE)
        final = await until_state(special_runtime, workflow_id, State.VALIDATE)
        assert {"ran": "special"} in final.task_results.values()
        lines = await workflow_lines(plain, workflow_id)
        assert "StepFailed EXECUTE" not in lines
        assert calls.count(State.EXECUTE) == 0, "the plain runtime never ran its own EXECUTE"
        assert task_name(State.EXECUTE) != "special-execute"
    finally:
        await special_runtime.stop()
        await plain.stop()


async def test_health_counts_processes_and_their_leases(url: str) -> None:
    calls = Calls()
    gate = Gate()
    one = await started(url, registry_of(calls, PREPARE=gate.held(calls)))
    two = await started(url, registry_of(calls))
    try:
        await one.coordinator.start(StartWorkflow(workflow_id=0, name="held"))
        await asyncio.to_thread(gate.entered.wait, DEADLINE)
        processes = await two.ownership.processes()
        assert {p.holder for p in processes} == {one.ownership.holder, two.ownership.holder}
        by_holder = {p.holder: p.leases for p in processes}
        assert by_holder[one.ownership.holder] == 1
        assert by_holder[two.ownership.holder] == 0
        assert one.ownership.held() == 1
    finally:
        gate.release()
        await two.stop()
        await one.stop()


async def test_a_cancel_on_one_process_stops_the_task_running_on_the_other(url: str) -> None:
    calls = Calls()
    entered, stopped = threading.Event(), threading.Event()

    def long_task(context: TaskContext) -> dict[str, Any]:
        entered.set()
        if context.cancelled.wait(DEADLINE):
            stopped.set()
        return {"stopped": stopped.is_set()}

    runs_it = registry_of(calls)
    runs_it.register(State.PREPARE, long_task, name="fake-prepare")
    one = await started(url, runs_it)
    two = await started(url, registry_of(calls))
    try:
        outcome = await one.coordinator.start(StartWorkflow(workflow_id=0, name="cancel me"))
        workflow_id = outcome.workflow.workflow_id
        assert await asyncio.to_thread(entered.wait, DEADLINE)
        await two.coordinator.cancel(workflow_id)  # the other process records the cancel
        assert await asyncio.to_thread(stopped.wait, DEADLINE), "the task was told to stop"
        final = await until_state(one, workflow_id, State.CANCELLED)
        assert "PREPARE" not in final.task_results, "its late result is discarded"
    finally:
        await two.stop()
        await one.stop()
