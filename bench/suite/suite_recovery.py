"""recovery_s: a server killed (SIGKILL) with workflows mid-step, restarted; seconds from the
restart until every one of them is COMPLETE."""

from __future__ import annotations

import asyncio
import time

from suite.context import Context
from suite.figures import Measured, Reference
from suite.loads import post_workflows, wait_finished
from suite.servers import Orchestrator, start_orchestrator

#: The states a workflow can be killed in, as GET /execution/stats counts them.
STATES = ("init", "prepare", "execute", "validate", "complete")


async def all_under_way(server: Orchestrator, seconds: float = 30) -> dict[str, int]:
    """The workflow counters once none is left in INIT (every one mid-step), or after
    `seconds`, as `server` counts them."""
    deadline = time.monotonic() + seconds
    while True:
        counts = await server.workflow_counts()
        if counts["init"] == 0 or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.01)


async def recovery_s(ctx: Context) -> Measured:
    """Post plan.recovery_workflows workflows with real step durations (TASK_TIME_SCALE=1, one
    worker per workflow so none waits for a thread), SIGKILL the server once none is left in
    INIT and none has finished (all mid-step), restart it, and time until all are COMPLETE.

    No reference: the note says where the workflows were when killed. The killed steps start
    again, so the figure includes the task time of the steps left (built-in steps take 0.3 to
    1.0 s each at this scale, 3.1 s a workflow)."""
    workflows = ctx.plan.recovery_workflows
    settings = {
        **ctx.target.server_settings,
        "TASK_TIME_SCALE": "1",
        "MAX_WORKERS": str(workflows),
        "SHUTDOWN_GRACE_SECONDS": "0",
    }
    url = await ctx.target.fresh(ctx, "recovery")
    folder = ctx.folder("recovery")
    server = await start_orchestrator(ctx, url, folder, "orchestrator-killed", settings)
    ctx.say(f"recovery: {workflows} workflows with ~3 s of steps each, then SIGKILL")
    await post_workflows(server.port, workflows, ctx.plan.concurrency, prefix="recovery")
    counts = await all_under_way(server)
    server.kill()
    running = {state.upper(): counts[state] for state in STATES if counts[state]}
    if sum(running.values()) != workflows or counts["complete"]:
        raise RuntimeError(f"not every workflow was mid-step at the kill: {counts}")
    again = Orchestrator(url, folder, "orchestrator-restarted", settings)
    ctx.stack.push_async_callback(again.stop)
    began = time.perf_counter()
    await again.healthy()
    await wait_finished([again], workflows, timeout=300)
    seconds = time.perf_counter() - began
    await again.stop()
    shown = ", ".join(f"{n} in {state}" for state, n in running.items())
    ctx.note(
        "recovery_s",
        f"SIGKILL with {shown} (mid-step); TASK_TIME_SCALE=1 (3.1 s of steps a workflow), "
        f"MAX_WORKERS={workflows}",
    )
    return seconds, None


async def failover_s(ctx: Context) -> Measured:
    """Two servers on one PostgreSQL database: post plan.recovery_workflows workflows (the same
    real step durations as recovery_s) to one, SIGKILL it once all are mid-step, and time until
    the survivor has completed every one (it takes them over once their leases expire).

    Reference: LEASE_SECONDS, the least a takeover can wait; the rest is the survivor running
    the interrupted steps again and the steps left."""
    workflows = ctx.plan.recovery_workflows
    lease = "5"
    settings = {
        **ctx.target.server_settings,
        "TASK_TIME_SCALE": "1",
        "MAX_WORKERS": str(workflows),
        "SHUTDOWN_GRACE_SECONDS": "0",
        "LEASE_SECONDS": lease,
    }
    url = await ctx.target.fresh(ctx, "failover")
    folder = ctx.folder("failover")
    doomed = await start_orchestrator(ctx, url, folder, "orchestrator-killed", settings)
    survivor = await start_orchestrator(ctx, url, folder, "orchestrator-survivor", settings)
    ctx.say(f"failover: {workflows} workflows on one of two servers, then SIGKILL it")
    await post_workflows(doomed.port, workflows, ctx.plan.concurrency, prefix="failover")
    counts = await all_under_way(survivor)
    doomed.kill()
    began = time.perf_counter()
    running = {state.upper(): counts[state] for state in STATES if counts[state]}
    await wait_finished([survivor], workflows, timeout=300)
    seconds = time.perf_counter() - began
    await survivor.stop()
    shown = ", ".join(f"{n} in {state}" for state, n in running.items())
    ctx.note(
        "failover_s",
        f"SIGKILL of the server driving them with {shown}; LEASE_SECONDS={lease}, "
        "TASK_TIME_SCALE=1 (3.1 s of steps a workflow)",
    )
    return seconds, Reference("lease_seconds", float(lease), "s")
