"""The command service as the coordinator drives it: what start, next, retry, cancel and delete
append (events, versions, metadata), how a conflict with another writer is resolved, and which
commands are refused, each checked against the log itself."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
import pytest

from orchestrator.domain.commands import (
    CancelWorkflow,
    EditWorkflow,
    StartWorkflow,
)
from orchestrator.domain.errors import InvalidTransition, StepInProgress, WorkflowNotFound
from orchestrator.domain.events import WorkflowEdited, WorkflowStarted
from orchestrator.domain.states import State
from orchestrator.engine.service import WORKFLOW_KIND, WorkflowService
from orchestrator.engine.task_types import InvalidTaskConfig
from orchestrator.engine.tasks import TaskRegistry
from orchestrator.eventstore.base import AppendResult, NewEvent
from orchestrator.eventstore.errors import ConcurrencyConflict
from orchestrator.eventstore.keys import IdempotencyClaim
from orchestrator.eventstore.leases import Fence
from orchestrator.eventstore.memory import InMemoryEventStore
from orchestrator.runtime import Runtime
from tests.engine.fake_tasks import TASK_STATES, Calls, Gate, failing, result_of, task_name
from tests.engine.harness import (
    AUTOMATIC,
    FULL_LIFE,
    MANUAL,
    lifecycle,
    quiesce,
    wait_until,
    workflow_events,
    workflow_lines,
    workflow_stream,
)

pytestmark = pytest.mark.anyio

OTHER_WRITER = {"actor": "other"}


def manual(name: str) -> StartWorkflow:
    """MANUAL under another name."""
    return msgspec.structs.replace(MANUAL, name=name)


async def versions(runtime: Runtime, workflow_id: int) -> list[int]:
    """The stream versions of a workflow's events, in order."""
    return [recorded.version for recorded in await workflow_stream(runtime, workflow_id)]


async def commands_recorded(runtime: Runtime, workflow_id: int) -> list[tuple[str, str]]:
    """(actor, command) from each event's metadata, in order."""
    return [
        (recorded.metadata["actor"], recorded.metadata["command"])
        for recorded in await workflow_stream(runtime, workflow_id)
    ]


def refusal(error: InvalidTransition) -> tuple[str, str, Sequence[str]]:
    """What a refusal says: the state, the action refused and the actions allowed."""
    return error.state, error.action, error.allowed


async def start_a_manual_workflow_that_fails(
    runtime: Runtime, registry: TaskRegistry, calls: Calls
) -> None:
    """Workflow 1, FAILED by its first `next` (its INIT task raises)."""
    registry.register(State.INIT, failing(calls, "no"), name=task_name(State.INIT))
    await runtime.coordinator.start(MANUAL)
    await runtime.coordinator.advance(1)
    assert (await workflow_lines(runtime, 1))[-1] == "WorkflowTransitioned INIT->FAILED"


# start -----------------------------------------------------------------------------------------


async def test_start_of_a_manual_workflow_records_only_its_start(
    runtime: Runtime, calls: Calls
) -> None:
    command = StartWorkflow(
        workflow_id=0, name="report", description="weekly", config={"k": 1}, auto_start=False
    )

    outcome = await runtime.coordinator.start(command)

    workflow = outcome.workflow
    assert (workflow.workflow_id, workflow.version, workflow.state, workflow.step) == (
        1,
        1,
        State.INIT,
        None,
    )
    [started] = await workflow_events(runtime, 1)
    assert isinstance(started, WorkflowStarted)
    assert (started.workflow_id, started.name, started.description, started.config) == (
        1,
        "report",
        "weekly",
        {"k": 1},
    )
    assert started.auto_start is False
    [recorded] = await workflow_stream(runtime, 1)
    assert (recorded.version, recorded.position) == (1, outcome.position)
    assert recorded.metadata == {"actor": "api", "command": "StartWorkflow"}
    await quiesce(runtime)
    assert calls.states == []


async def test_start_of_an_automatic_workflow_begins_its_first_step_in_the_same_append(
    runtime: Runtime, registry: TaskRegistry, calls: Calls, gate: Gate
) -> None:
    registry.register(State.INIT, gate.held(calls), name=task_name(State.INIT))

    outcome = await runtime.coordinator.start(AUTOMATIC)

    assert (outcome.workflow.version, outcome.workflow.step) == (2, State.INIT)
    assert outcome.workflow.step_task == "fake-init"
    stream = await workflow_stream(runtime, 1)
    assert [recorded.type for recorded in stream] == ["WorkflowStarted", "StepStarted"]
    assert [recorded.position for recorded in stream] == [outcome.position - 1, outcome.position]
    assert {recorded.metadata["command"] for recorded in stream} == {"StartWorkflow+BeginStep"}


async def test_ids_are_given_in_order_and_a_deleted_ones_is_not_given_again(
    runtime: Runtime,
) -> None:
    first = await runtime.coordinator.start(MANUAL)
    second = await runtime.coordinator.start(MANUAL)
    await runtime.coordinator.cancel(2)
    await runtime.coordinator.delete(2)

    third = await runtime.coordinator.start(MANUAL)

    ids = [outcome.workflow.workflow_id for outcome in (first, second, third)]
    assert ids == [1, 2, 3]


class Batch(msgspec.Struct):
    """The config a test step declares."""

    size: int


async def test_a_start_with_a_config_the_tasks_cannot_run_records_nothing(
    runtime: Runtime, registry: TaskRegistry
) -> None:
    registry.register(
        State.EXECUTE, lambda ctx: {"size": ctx.config.size}, "sized", config_type=Batch
    )

    with pytest.raises(InvalidTaskConfig, match=r"Expected `int`, got `str` - at `\$.config.size`"):
        await runtime.coordinator.start(
            StartWorkflow(workflow_id=0, name="bad", config={"size": "many"})
        )

    assert await runtime.store.head_position() == 0
    sized = msgspec.structs.replace(MANUAL, config={"size": 3})
    assert (await runtime.coordinator.start(sized)).workflow.workflow_id == 1


# next ------------------------------------------------------------------------------------------


async def test_next_runs_the_current_step_and_returns_once_its_outcome_is_recorded(
    runtime: Runtime, calls: Calls
) -> None:
    await runtime.coordinator.start(MANUAL)

    outcome = await runtime.coordinator.advance(1)

    workflow = outcome.workflow
    assert (workflow.state, workflow.version, workflow.step) == (State.PREPARE, 4, None)
    assert workflow.task_results == {"INIT": result_of(State.INIT)}
    assert await workflow_lines(runtime, 1) == ["WorkflowStarted", *lifecycle(State.INIT)]
    assert await versions(runtime, 1) == [1, 2, 3, 4]
    assert await commands_recorded(runtime, 1) == [
        ("api", "StartWorkflow"),
        ("api", "AdvanceWorkflow"),
        ("engine", "FinishStep"),
        ("engine", "FinishStep"),
    ]
    assert calls.states == [State.INIT]


async def test_four_nexts_take_a_manual_workflow_to_complete_and_finalize_it(
    runtime: Runtime, calls: Calls
) -> None:
    await runtime.coordinator.start(MANUAL)

    states = [(await runtime.coordinator.advance(1)).workflow.state for _ in range(4)]

    assert states == [State.PREPARE, State.EXECUTE, State.VALIDATE, State.COMPLETE]
    assert await workflow_lines(runtime, 1) == ["WorkflowStarted", *FULL_LIFE]
    latest = await runtime.service.load(1, fresh=True)
    assert latest is not None
    assert latest.finalized
    assert latest.version == 1 + len(FULL_LIFE)
    assert calls.states == list(TASK_STATES)


async def test_next_on_a_finished_workflow_is_refused_and_records_nothing(
    runtime: Runtime,
) -> None:
    await runtime.coordinator.start(MANUAL)
    await runtime.coordinator.cancel(1)

    with pytest.raises(InvalidTransition) as refused:
        await runtime.coordinator.advance(1)

    assert refusal(refused.value) == ("CANCELLED", "next", ["edit", "delete"])
    assert "it has finished" in str(refused.value)
    assert await versions(runtime, 1) == [1, 2]


async def test_next_on_a_failed_workflow_says_to_use_retry(
    runtime: Runtime, registry: TaskRegistry, calls: Calls
) -> None:
    await start_a_manual_workflow_that_fails(runtime, registry, calls)

    with pytest.raises(InvalidTransition) as refused:
        await runtime.coordinator.advance(1)

    assert refusal(refused.value) == ("FAILED", "next", ["retry", "edit", "delete"])
    assert "use retry" in str(refused.value)


async def test_next_while_a_step_runs_raises_step_in_progress(
    runtime: Runtime, registry: TaskRegistry, calls: Calls, gate: Gate
) -> None:
    registry.register(State.INIT, gate.held(calls), name=task_name(State.INIT))
    await runtime.coordinator.start(MANUAL)
    first = asyncio.ensure_future(runtime.coordinator.advance(1))
    await wait_until(gate.entered.is_set, what="the INIT step to run")

    with pytest.raises(StepInProgress) as refused:
        await runtime.coordinator.advance(1)

    assert (refused.value.state, refused.value.allowed) == ("INIT", ["cancel"])
    gate.release()
    assert (await first).workflow.state is State.PREPARE
    assert await workflow_lines(runtime, 1) == ["WorkflowStarted", *lifecycle(State.INIT)]
    assert calls.count(State.INIT) == 1


@pytest.mark.parametrize("command", ["advance", "retry", "cancel", "delete"])
async def test_commands_on_a_workflow_that_never_existed_raise_workflow_not_found(
    runtime: Runtime, command: str
) -> None:
    with pytest.raises(WorkflowNotFound) as missing:
        await getattr(runtime.coordinator, command)(7)

    assert missing.value.workflow_id == 7
    assert await runtime.store.head_position() == 0


# retry -----------------------------------------------------------------------------------------


async def test_retry_records_the_move_back_to_init_with_one_more_retry(
    runtime: Runtime, registry: TaskRegistry, calls: Calls
) -> None:
    await start_a_manual_workflow_that_fails(runtime, registry, calls)

    outcome = await runtime.coordinator.retry(1)

    workflow = outcome.workflow
    assert (workflow.state, workflow.version, workflow.retries) == (State.INIT, 5, 1)
    assert (workflow.error_message, workflow.completed_at) == (None, None)
    assert (await workflow_lines(runtime, 1))[-2:] == [
        "WorkflowTransitioned INIT->FAILED",
        "WorkflowTransitioned FAILED->INIT",
    ]
    assert (await commands_recorded(runtime, 1))[-1] == ("api", "RetryWorkflow")


async def test_retry_of_a_workflow_that_has_not_failed_is_refused(runtime: Runtime) -> None:
    await runtime.coordinator.start(MANUAL)

    with pytest.raises(InvalidTransition) as refused:
        await runtime.coordinator.retry(1)

    assert refusal(refused.value) == ("INIT", "retry", ["next", "edit", "cancel"])
    assert await versions(runtime, 1) == [1]


# cancel ----------------------------------------------------------------------------------------


async def test_cancel_records_cancelled_at_once(runtime: Runtime) -> None:
    await runtime.coordinator.start(MANUAL)

    outcome = await runtime.coordinator.cancel(1)

    workflow = outcome.workflow
    assert (workflow.state, workflow.version) == (State.CANCELLED, 2)
    assert workflow.completed_at is not None
    assert await workflow_lines(runtime, 1) == [
        "WorkflowStarted",
        "WorkflowTransitioned INIT->CANCELLED",
    ]
    assert (await commands_recorded(runtime, 1))[-1] == ("api", "CancelWorkflow")


@pytest.mark.parametrize("canceller", ["this service", "another writer"])
async def test_cancel_of_a_cancelled_workflow_is_refused_whoever_cancelled_it(
    runtime: Runtime, canceller: str
) -> None:
    await runtime.coordinator.start(MANUAL)  # the runtime's service remembers it running
    if canceller == "this service":
        await runtime.coordinator.cancel(1)
    else:  # the remembered state allows cancel: the append conflicts, and the stream refuses
        await WorkflowService(WORKFLOW_KIND, runtime.store).execute(
            1, CancelWorkflow(), OTHER_WRITER
        )

    with pytest.raises(InvalidTransition) as refused:
        await runtime.coordinator.cancel(1)

    assert refusal(refused.value) == ("CANCELLED", "cancel", ["edit", "delete"])
    assert await versions(runtime, 1) == [1, 2]


# delete ----------------------------------------------------------------------------------------


async def test_delete_of_a_finished_workflow_appends_a_tombstone_and_hides_it(
    runtime: Runtime,
) -> None:
    await runtime.coordinator.start(AUTOMATIC)
    await quiesce(runtime)

    outcome = await runtime.coordinator.delete(1)

    assert outcome.workflow.deleted
    assert outcome.workflow.version == 2 + len(FULL_LIFE)
    assert (await workflow_lines(runtime, 1))[-1] == "WorkflowDeleted"
    for command in ("advance", "retry", "cancel", "delete"):
        with pytest.raises(WorkflowNotFound):
            await getattr(runtime.coordinator, command)(1)
    assert await versions(runtime, 1) == list(range(1, 3 + len(FULL_LIFE)))


async def test_delete_of_a_running_workflow_is_refused_with_a_hint_to_cancel(
    runtime: Runtime,
) -> None:
    await runtime.coordinator.start(MANUAL)

    with pytest.raises(InvalidTransition) as refused:
        await runtime.coordinator.delete(1)

    assert refusal(refused.value) == ("INIT", "delete", ["next", "edit", "cancel"])
    assert "cancel it first" in str(refused.value)
    assert await versions(runtime, 1) == [1]


# Another writer on the same log ----------------------------------------------------------------


async def test_a_command_decided_on_a_stale_state_is_decided_again_after_the_conflict(
    runtime: Runtime,
) -> None:
    await runtime.coordinator.start(MANUAL)  # the runtime's service now remembers version 1
    other = WorkflowService(WORKFLOW_KIND, runtime.store)
    await other.execute(1, EditWorkflow(name="renamed"), OTHER_WRITER)

    outcome = await runtime.coordinator.edit(1, EditWorkflow(description="weekly"))

    assert outcome.workflow.version == 3
    edits = (await workflow_events(runtime, 1))[1:]
    assert [(e.name, e.description) for e in edits if isinstance(e, WorkflowEdited)] == [
        ("renamed", None),
        ("renamed", "weekly"),  # decided again on the fresh state: the other edit is kept
    ]
    assert await versions(runtime, 1) == [1, 2, 3]


async def test_a_refusal_by_a_stale_state_is_checked_again_against_the_stream(
    runtime: Runtime,
) -> None:
    await runtime.coordinator.start(MANUAL)  # remembered as running: delete would be refused
    other = WorkflowService(WORKFLOW_KIND, runtime.store)
    await other.execute(1, CancelWorkflow(), OTHER_WRITER)

    outcome = await runtime.coordinator.delete(1)

    assert outcome.workflow.deleted
    assert await workflow_lines(runtime, 1) == [
        "WorkflowStarted",
        "WorkflowTransitioned INIT->CANCELLED",
        "WorkflowDeleted",
    ]


async def test_a_create_under_an_id_another_writer_took_moves_on_to_the_next_id(
    runtime: Runtime,
) -> None:
    other = WorkflowService(WORKFLOW_KIND, runtime.store)
    await other.create(manual("theirs"), OTHER_WRITER)

    outcome = await runtime.coordinator.start(manual("ours"))

    assert outcome.workflow.workflow_id == 2
    [theirs] = await workflow_events(runtime, 1)
    assert isinstance(theirs, WorkflowStarted)
    assert theirs.name == "theirs"
    [ours] = await workflow_events(runtime, 2)
    assert isinstance(ours, WorkflowStarted)
    assert ours.name == "ours"


class ConflictingStore(InMemoryEventStore):
    """An in-memory log whose appends, once `conflicting` is set, all lose to another writer."""

    def __init__(self) -> None:
        super().__init__()
        self.conflicting = False
        self.refused = 0

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[NewEvent],
        *,
        idempotency: IdempotencyClaim | None = None,
        fence: Fence | None = None,
    ) -> AppendResult:
        if self.conflicting:
            self.refused += 1
            raise ConcurrencyConflict(stream_id, expected_version, expected_version + 1)
        return await super().append(
            stream_id, expected_version, events, idempotency=idempotency, fence=fence
        )


async def test_a_service_that_never_wins_the_race_gives_up_with_concurrency_conflict() -> None:
    store = ConflictingStore()
    service = WorkflowService(WORKFLOW_KIND, store)
    await service.create(MANUAL, OTHER_WRITER)
    store.conflicting = True

    with pytest.raises(ConcurrencyConflict) as lost:
        await service.execute(1, CancelWorkflow(), OTHER_WRITER)
    with pytest.raises(ConcurrencyConflict):
        await service.create(MANUAL, OTHER_WRITER)

    assert lost.value.stream_id == "workflow-1"
    assert store.refused > 2  # each command was tried again, not given up at the first conflict
    assert [recorded.type for recorded in await store.read_stream("workflow-1")] == [
        "WorkflowStarted"
    ]
    assert await store.head_position() == 1
