"""Figures of the HTTP service under load: workflows end to end, POST latency, GET reads."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from suite.context import Context
from suite.figures import Measured, Reference
from suite.loads import (
    percentile,
    post_workflows,
    read_load,
    read_load_generator,
    wait_finished,
)
from suite.servers import Orchestrator, start_bare_starlette, start_orchestrator
from suite.suite_dbos import dbos_reference

READ_CONNECTIONS = 32


@dataclass
class E2ERun:
    """One server that ran `workflows` instant workflows end to end (it keeps running, idle,
    for the reads)."""

    server: Orchestrator
    workflows: int
    rate: float
    latencies: list[float]


async def e2e_run(ctx: Context) -> E2ERun:
    """POST /workflow/start from 16 keep-alive connections on a fresh database, timed from the
    first POST until every workflow is COMPLETE (shared by the figures that need it)."""

    async def run() -> E2ERun:
        workflows, concurrency = ctx.plan.e2e_workflows, ctx.plan.concurrency
        url = await ctx.target.fresh(ctx, "e2e")
        server = await start_orchestrator(
            ctx, url, ctx.folder("e2e-server"), settings=ctx.target.server_settings
        )
        ctx.say(f"e2e: {workflows} workflows from {concurrency} connections, instant tasks")
        latencies: list[float] = []
        began = time.perf_counter()
        await post_workflows(server.port, workflows, concurrency, latencies=latencies)
        await wait_finished([server], workflows)
        rate = workflows / (time.perf_counter() - began)
        ctx.say(f"e2e: {rate:,.0f} workflows/s")
        return E2ERun(server, workflows, rate, latencies)

    return await ctx.shared("e2e", run)


async def e2e_workflows_per_s(ctx: Context) -> Measured:
    """Workflows/s end to end; DBOS's five-step workflows on the same kind for reference."""
    run = await e2e_run(ctx)
    reference = await dbos_reference(ctx, run.workflows, ctx.plan.concurrency)
    ctx.note(
        "e2e_workflows_per_s",
        f"{run.workflows:,} workflows, {ctx.plan.concurrency} connections, TASK_TIME_SCALE=0",
    )
    return run.rate, reference


async def post_p99_ms(ctx: Context) -> Measured:
    """The 99th percentile of the e2e POSTs' latencies."""
    run = await e2e_run(ctx)
    return percentile(run.latencies, 0.99) * 1000, None


async def get_workflow_rps(ctx: Context) -> Measured:
    """GET /workflow/{id} (ids of the e2e run) from 32 connections; bare Starlette answering a
    small JSON dict under the same uvicorn settings for reference."""
    run = await e2e_run(ctx)
    seconds = ctx.plan.read_seconds
    how = read_load_generator(READ_CONNECTIONS)
    folder = ctx.folder("reads")
    ctx.say(f"reads: GET /workflow/{{id}} for {seconds:.0f} s ({how})")
    rate = await read_load(run.server.port, run.workflows, READ_CONNECTIONS, seconds, folder)
    await run.server.stop()
    bare = await start_bare_starlette(ctx, folder)
    ctx.say(f"reads: {rate:,.0f} requests/s; now bare Starlette for {seconds:.0f} s")
    ceiling = await read_load(bare.port, run.workflows, READ_CONNECTIONS, seconds, folder)
    await bare.stop()
    note = f"{how}, {seconds:.0f} s each"
    return rate, Reference("starlette_ceiling_rps", ceiling, "requests/s", note)


async def e2e_workflows_per_s_2proc(ctx: Context) -> Measured:
    """As e2e_workflows_per_s with two server processes on one database, half the connections
    on each; the one-process figure for reference."""
    single = await e2e_run(ctx)
    workflows, concurrency = ctx.plan.e2e_workflows, ctx.plan.concurrency
    url = await ctx.target.fresh(ctx, "e2e-2proc")
    folder = ctx.folder("e2e-2proc")
    settings = ctx.target.server_settings
    servers = [
        await start_orchestrator(ctx, url, folder, f"orchestrator-{n}", settings) for n in (1, 2)
    ]
    ctx.say(f"e2e, 2 processes: {workflows} workflows from {concurrency} connections")
    half = workflows // 2
    began = time.perf_counter()
    await asyncio.gather(
        *(
            post_workflows(server.port, count, concurrency // 2, prefix=f"bench-{server.port}")
            for server, count in zip(servers, (half, workflows - half), strict=True)
        )
    )
    await wait_finished(servers, workflows)
    rate = workflows / (time.perf_counter() - began)
    for server in servers:
        await server.stop()
    return rate, Reference("e2e_workflows_per_s", single.rate, "workflows/s")
