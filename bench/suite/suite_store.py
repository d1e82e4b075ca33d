"""Figures of the event store itself, in this process: appends, and replay, rebuild and verify
on a big log, each next to what raw SQL does with the same tables."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import msgspec

from orchestrator.backend import Backend, make_backend
from orchestrator.domain.commands import StartWorkflow
from orchestrator.domain.events import WorkflowStarted, decode_event, encode_event
from orchestrator.eventstore.base import NewEvent, RecordedEvent, StreamAppend
from orchestrator.history.replay import replay
from orchestrator.history.verify import verify
from orchestrator.progress import Reading
from orchestrator.projections.rebuild import rebuild
from orchestrator.runtime import build_runtime
from orchestrator.settings import Settings, parse_database
from suite.context import Context
from suite.figures import Measured, Reference

APPENDERS = 16
#: Workflows per append_streams call while filling a log (15 events each).
FILL_BATCH = 400


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[Backend]:
    """The backend of `url` from the project's factory, its store open."""
    backend = make_backend(parse_database(url))
    await backend.store.open()
    try:
        yield backend
    finally:
        await backend.store.close()


async def append_events_per_s(ctx: Context) -> Measured:
    """16 tasks each appending one event at a time to a stream of its own, through the store's
    `append`, for a few seconds; raw SQL committing one event per transaction for reference."""
    seconds = ctx.plan.append_seconds
    event = NewEvent(
        type="StepSucceeded",
        data=b'{"type":"StepSucceeded","at":"2026-01-01T00:00:00Z","state":"EXECUTE",'
        b'"result":{"status":"executed","computation_result":41654167500,"iterations":5000},'
        b'"duration":0.0007}',
        metadata={"actor": "engine", "command": "FinishStep+BeginStep"},
        schema_version=2,
    )
    ctx.say(f"append: {APPENDERS} appenders of single events for {seconds:.1f} s")
    async with opened(await ctx.target.fresh(ctx, "append")) as backend:
        store = backend.store
        deadline = time.perf_counter() + seconds
        counts = [0] * APPENDERS

        async def appender(number: int) -> None:
            while time.perf_counter() < deadline:
                await store.append(f"append-{number}", counts[number], [event])
                counts[number] += 1

        began = time.perf_counter()
        await asyncio.gather(*(appender(n) for n in range(APPENDERS)))
        rate = sum(counts) / (time.perf_counter() - began)
    ctx.say(f"append: {rate:,.0f} events/s; now raw SQL, one event per commit")
    raw = await ctx.target.raw_commit_rate(await ctx.target.fresh(ctx, "raw-commit"), seconds)
    note = "one connection, one INSERT per transaction"
    return rate, Reference(ctx.target.commit_reference, raw, "events/s", note)


async def workflow_template() -> list[RecordedEvent]:
    """The events of one workflow run to COMPLETE by the real engine (in memory, instant
    tasks): what the log fill copies for every workflow."""
    runtime = build_runtime(Settings(database_url="memory://", task_time_scale=0, log_file=""))
    await runtime.start()
    try:
        await runtime.coordinator.start(StartWorkflow(workflow_id=0, name="template"))
        await runtime.coordinator.wait_idle()
        return await runtime.store.read_all(0, 1000)
    finally:
        await runtime.stop()


def workflow_events(template: list[RecordedEvent], workflow_id: int) -> list[NewEvent]:
    """The template's events for workflow `workflow_id` (its WorkflowStarted renamed)."""
    events: list[NewEvent] = []
    for recorded in template:
        data = recorded.data
        if recorded.type == "WorkflowStarted":
            started = decode_event(data, recorded.schema_version)
            assert isinstance(started, WorkflowStarted)
            renamed = msgspec.structs.replace(
                started, workflow_id=workflow_id, name=f"bench-{workflow_id}"
            )
            data = encode_event(renamed)
        events.append(
            NewEvent(
                type=recorded.type,
                data=data,
                metadata=recorded.metadata,
                schema_version=recorded.schema_version,
            )
        )
    return events


@dataclass
class History:
    """A log filled with generated workflows, as the history tools find it."""

    url: str
    events: int
    workflows: int


async def history(ctx: Context) -> History:
    """A fresh log of at least plan.history_events events: whole workflows, appended through
    the store in big append_streams batches rather than run by the engine (shared)."""

    async def fill() -> History:
        template = await workflow_template()
        workflows = -(-ctx.plan.history_events // len(template))
        url = await ctx.target.fresh(ctx, "history")
        ctx.say(f"history: filling {workflows * len(template):,} events ({workflows:,} workflows)")
        began = time.perf_counter()
        async with opened(url) as backend:
            for first in range(1, workflows + 1, FILL_BATCH):
                last = min(first + FILL_BATCH, workflows + 1)
                await backend.store.append_streams(
                    [
                        StreamAppend(
                            stream_id=f"workflow-{n}",
                            expected_version=0,
                            events=workflow_events(template, n),
                        )
                        for n in range(first, last)
                    ]
                )
            events = await backend.store.head_position()
        seconds = time.perf_counter() - began
        ctx.say(f"history: filled in {seconds:.1f} s ({events / seconds:,.0f} events/s)")
        return History(url, events, workflows)

    return await ctx.shared("history", fill)


async def scan_reference(ctx: Context) -> Reference:
    """A raw ordered scan of the history log's events table (shared)."""

    async def scan() -> Reference:
        log = await history(ctx)
        rate = await ctx.target.raw_scan_rate(log.url)
        ctx.say(f"history: raw scan {rate:,.0f} rows/s")
        note = f"SELECT every column ORDER BY position, {log.events:,} rows"
        return Reference(ctx.target.scan_reference, rate, "rows/s", note)

    return await ctx.shared("scan", scan)


async def replay_events_per_s(ctx: Context) -> Measured:
    """`orchestrator replay` of every workflow of the log in turn (orchestrator.history.replay:
    read the stream, decode, fold event by event), as events/s."""
    log = await history(ctx)
    ctx.say(f"history: replaying {log.workflows:,} workflows")
    async with opened(log.url) as backend:
        began = time.perf_counter()
        events = 0
        for workflow_id in range(1, log.workflows + 1):
            events += len(await replay(backend.store, workflow_id))
        rate = events / (time.perf_counter() - began)
    assert events == log.events, (events, log.events)
    return rate, await scan_reference(ctx)


async def rebuild_events_per_s(ctx: Context) -> Measured:
    """`orchestrator rebuild-projections` on the log (projections.rebuild.rebuild)."""
    log = await history(ctx)
    ctx.say(f"history: rebuilding the read models from {log.events:,} events")

    def show(reading: Reading) -> None:
        ctx.say(f"  rebuild: {reading.done:,} events, {reading.rate:,.0f}/s")

    async with opened(log.url) as backend:
        meter = await rebuild(backend.store, backend.tables, show)
        rate = meter.rate
    return rate, await scan_reference(ctx)


async def verify_events_per_s(ctx: Context) -> Measured:
    """`orchestrator verify` on the log (history.verify.verify); it must pass."""
    log = await history(ctx)
    ctx.say(f"history: verifying {log.events:,} events")
    async with opened(log.url) as backend:
        report = await verify(backend.store)
    if not report.ok:
        raise RuntimeError(f"verify found violations: {report.violations[:3]}")
    return report.rate, await scan_reference(ctx)
