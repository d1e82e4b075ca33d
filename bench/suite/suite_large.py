"""Figures of a server that has run many workflows: stats latency with a small and a large
store, memory, bytes on disk per workflow, and start-up on the large store."""

from __future__ import annotations

import time
from dataclasses import dataclass

from suite.context import Context
from suite.figures import Measured, Reference
from suite.loads import post_workflows, request_p50_ms, wait_finished
from suite.servers import Orchestrator, start_orchestrator


@dataclass
class LargeRun:
    """What one server showed while plan.large_workflows workflows ran through it."""

    workflows: int
    small_workflows: int
    stats_small_ms: float
    stats_large_ms: float
    rss_start_mb: float
    rss_large_mb: float
    bytes_on_disk: int
    startup_empty_s: float
    startup_large_s: float


async def large_run(ctx: Context) -> LargeRun:
    """Start a server on a fresh database (timing its start-up and reading its memory), run
    plan.small_workflows instant workflows through it and time GET /execution/stats, then the
    rest up to plan.large_workflows and time it again and read its memory; stop it, measure the
    database, and time a start on it (shared)."""

    async def run() -> LargeRun:
        plan = ctx.plan
        url = await ctx.target.fresh(ctx, "large")
        folder = ctx.folder("large-server")
        settings = ctx.target.server_settings
        server = await start_orchestrator(ctx, url, folder, settings=settings, wait=False)
        startup_empty = await server.healthy()
        rss_start = server.rss_mb()
        small, large = plan.small_workflows, plan.large_workflows
        ctx.say(f"large: {small:,} workflows, then GET /execution/stats")
        await post_workflows(server.port, small, plan.concurrency)
        await wait_finished([server], small)
        stats_small = await request_p50_ms(server.port, "/execution/stats", plan.stats_requests)
        ctx.say(f"large: {large - small:,} more workflows (to {large:,})")
        began = time.perf_counter()
        await post_workflows(server.port, large - small, plan.concurrency, prefix="large")
        await wait_finished([server], large)
        ctx.say(f"large: {(large - small) / (time.perf_counter() - began):,.0f} workflows/s")
        stats_large = await request_p50_ms(server.port, "/execution/stats", plan.stats_requests)
        rss_large = server.rss_mb()
        await server.stop()
        bytes_on_disk = await ctx.target.size_bytes(url)
        ctx.say(f"large: {bytes_on_disk / 1e6:,.1f} MB on disk; starting a server on it")
        again = Orchestrator(url, folder, "orchestrator-restart", settings)
        ctx.stack.push_async_callback(again.stop)
        startup_large = await again.healthy()
        await again.stop()
        return LargeRun(
            workflows=large,
            small_workflows=small,
            stats_small_ms=stats_small,
            stats_large_ms=stats_large,
            rss_start_mb=rss_start,
            rss_large_mb=rss_large,
            bytes_on_disk=bytes_on_disk,
            startup_empty_s=startup_empty,
            startup_large_s=startup_large,
        )

    return await ctx.shared("large", run)


async def stats_p50_ms_small(ctx: Context) -> Measured:
    """Median GET /execution/stats with plan.small_workflows workflows in the store."""
    return (await large_run(ctx)).stats_small_ms, None


async def stats_p50_ms_large(ctx: Context) -> Measured:
    """Median GET /execution/stats with plan.large_workflows workflows in the store; the small
    store's for reference."""
    run = await large_run(ctx)
    note = f"{run.small_workflows:,} workflows"
    return run.stats_large_ms, Reference("stats_p50_ms_small", run.stats_small_ms, "ms", note)


async def rss_mb_large(ctx: Context) -> Measured:
    """The server's VmRSS once plan.large_workflows workflows have run through it; its VmRSS
    right after start-up on the empty database for reference."""
    run = await large_run(ctx)
    return run.rss_large_mb, Reference("rss_mb_start", run.rss_start_mb, "MB", "empty database")


async def db_bytes_per_workflow(ctx: Context) -> Measured:
    """The database's size after the large run (a checkpoint first) per completed workflow."""
    run = await large_run(ctx)
    return run.bytes_on_disk / run.workflows, None


async def startup_s_large(ctx: Context) -> Measured:
    """Seconds from `orchestrator serve` to a 200 from /health on the large store; the same on
    the empty database for reference."""
    run = await large_run(ctx)
    note = "empty database"
    return run.startup_large_s, Reference("startup_s_empty", run.startup_empty_s, "s", note)
