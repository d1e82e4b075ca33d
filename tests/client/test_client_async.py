"""`AsyncClient`: the same methods, errors, retries, stream and wait as `Client`, awaited."""

from __future__ import annotations

from collections.abc import AsyncIterable

import anyio
import pytest

from orchestrator.client import (
    AsyncClient,
    Conflict,
    Event,
    NotFound,
    State,
    TaskStatus,
    Unauthorized,
    WaitTimeout,
)
from tests.client.conftest import QUICK
from tests.client.transports import AsyncBusy, AsyncCutStreams, AsyncLoseAnswers, resumed_from
from tests.e2e.conftest import ServerProcess, StartServer
from tests.waiting import wait_for_async

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


async def collect_until(events: AsyncIterable[Event], head: int) -> list[Event]:
    """Events from `events` up to and including position `head`."""
    taken: list[Event] = []
    async for event in events:
        taken.append(event)
        if event.position >= head:
            break
    return taken


async def test_workflow_methods_run_a_workflow_through_its_life(
    async_client: AsyncClient,
) -> None:
    client = async_client
    manual = (await client.start("manual", auto_start=False)).workflow_id
    stepped = await client.next(manual)
    cancelled = await client.cancel(manual)
    flaky = (await client.start("flaky", config={"simulate_failure": True})).workflow_id
    failed = await client.wait(flaky, timeout=15)
    retried = await client.retry(flaky)
    recovered = await client.wait(flaky, timeout=15)
    first_version = await client.get(flaky, at_version=1)
    await client.delete(manual)

    assert (stepped.current_state, cancelled.status) == ("PREPARE", "CANCELLED")
    assert (failed.status, retried.retries, recovered.status) == ("FAILED", 1, "COMPLETE")
    assert first_version.status == "INIT"
    with pytest.raises(NotFound):
        await client.get(manual)
    assert [workflow.workflow_id for workflow in await client.list()] == [flaky]
    assert await client.list(status=State.FAILED) == []


async def test_created_workflows_are_edited_launched_and_described(
    async_client: AsyncClient,
) -> None:
    client = async_client
    created = await client.create("draft", config={"iterations": 2})
    edited = await client.update(created.workflow_id, name="final")
    launched = await client.launch(created.workflow_id)
    done = await client.wait(created.workflow_id, timeout=15)
    status = await client.status(created.workflow_id)
    transitions = await client.transitions(created.workflow_id)

    assert (edited.name, edited.config) == ("final", {"iterations": 2})
    assert launched.workflow_id == created.workflow_id
    assert (done.status, status.transitions, len(transitions)) == ("COMPLETE", 4, 4)
    with pytest.raises(Conflict) as raised:
        await client.next(created.workflow_id)
    assert raised.value.code == "invalid_transition"


async def test_tasks_history_and_service_routes_answer_typed_values(
    async_client: AsyncClient,
) -> None:
    client = async_client
    workflow_id = (await client.start("owner")).workflow_id
    workflow = await client.wait(workflow_id, timeout=15)
    task = await client.create_task("nap", "sleep", config={"duration": 0}, workflow_id=workflow_id)
    done = await wait_for_async(
        lambda: client.get_task(task.task_id),
        lambda found: found.status == TaskStatus.COMPLETED,
        what=f"task {task.task_id} to complete",
    )
    listed = await client.list_tasks(status="completed")
    of_workflow = await client.workflow_tasks(workflow_id)
    await client.delete_task(task.task_id)
    page = await client.events(type="WorkflowStarted")
    stream_events = await client.workflow_events(workflow_id)
    stats = await client.stats()
    health = await client.health()
    info = await client.info()
    machine = await client.state_machine()

    assert done.result == {"status": "slept", "duration": 0}
    assert [found.task_id for found in listed] == [task.task_id]
    assert [found.task_id for found in of_workflow] == [task.task_id]
    assert await client.list_tasks() == []
    assert [event.data["name"] for event in page.events] == ["owner"]
    assert len(stream_events) == workflow.version
    assert (stats.workflows.total, stats.workflows.complete) == (1, 1)
    assert (health.status, info.version) == ("healthy", health.version)
    assert machine.final_states == ["COMPLETE", "CANCELLED"]


async def test_errors_carry_status_code_and_detail(async_client: AsyncClient) -> None:
    with pytest.raises(NotFound) as raised:
        await async_client.get(999)

    assert (raised.value.status, raised.value.code, raised.value.detail) == (
        404,
        "not_found",
        "workflow 999 does not exist",
    )


async def test_the_token_is_required_and_accepted(start_server: StartServer) -> None:
    token = "client-test-token-0123456789"
    server = start_server(API_TOKEN=token)

    async with AsyncClient(server.base_url, retry=QUICK) as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.start("sneaky")
    async with AsyncClient(server.base_url, token=token, retry=QUICK) as member:
        started = await member.start("allowed", auto_start=False)
        workflows = await member.list()

    assert [workflow.workflow_id for workflow in workflows] == [started.workflow_id]


async def test_a_lost_answer_is_retried_with_its_key_and_creates_one_workflow(
    server: ServerProcess,
) -> None:
    transport = AsyncLoseAnswers(count=1)

    async with AsyncClient(server.base_url, retry=QUICK, transport=transport) as client:
        started = await client.start("exactly-once")
        workflows = await client.list()

    (first, lost), (retried, answer) = transport.commands
    assert first.headers["Idempotency-Key"] == retried.headers["Idempotency-Key"]
    assert lost.status_code == answer.status_code == 201
    assert answer.headers["Idempotent-Replayed"] == "true"
    assert [workflow.workflow_id for workflow in workflows] == [started.workflow_id]


async def test_429_is_retried_with_the_same_key(server: ServerProcess) -> None:
    transport = AsyncBusy(count=2, status=429)

    async with AsyncClient(server.base_url, retry=QUICK, transport=transport) as client:
        started = await client.start("patient", auto_start=False)
        workflows = await client.list()

    keys = {request.headers.get("Idempotency-Key") for request in transport.requests[:3]}
    assert len(keys) == 1 and None not in keys
    assert [workflow.workflow_id for workflow in workflows] == [started.workflow_id]


async def test_wait_times_out_on_a_workflow_that_stays_put(async_client: AsyncClient) -> None:
    workflow_id = (await async_client.start("stays", auto_start=False)).workflow_id

    with pytest.raises(WaitTimeout) as raised:
        await async_client.wait(workflow_id, timeout=0.2)

    assert (raised.value.workflow_id, raised.value.last_status) == (workflow_id, "INIT")


async def test_a_cut_stream_resumes_without_loss_or_duplicates(server: ServerProcess) -> None:
    transport = AsyncCutStreams(count=2)
    async with AsyncClient(server.base_url, retry=QUICK, transport=transport) as client:
        await client.wait((await client.start("streamed")).workflow_id, timeout=15)
        head = (await client.events()).head

        async with client.stream(after=0) as events:
            received = await collect_until(events, head)

    assert [event.position for event in received] == list(range(1, head + 1))
    assert len(resumed_from(transport)) == 3
    assert transport.closed == [True, True, True]


async def test_a_stream_resumes_after_the_server_stops_and_starts_again(
    server: ServerProcess,
) -> None:
    # A graceful stop ends the stream cleanly (no error): the client reconnects all the same.
    transport = AsyncCutStreams()
    async with AsyncClient(server.base_url, retry=QUICK, transport=transport) as client:
        waiting = (await client.start("waiting", auto_start=False)).workflow_id
        async with client.stream(after=0) as events:
            first = await events.__anext__()
            await anyio.to_thread.run_sync(server.stop)
            await anyio.to_thread.run_sync(server.start)
            await client.next(waiting)
            finished = await client.wait((await client.start("after")).workflow_id, timeout=15)
            head = (await client.events()).head
            received = [first, *await collect_until(events, head)]
        logged = (await client.events(limit=1000)).events

    assert finished.status == "COMPLETE"
    assert [event.position for event in received] == [event.position for event in logged]
    assert [event.position for event in received] == list(range(1, head + 1))
    assert resumed_from(transport) == [None, "1"]
