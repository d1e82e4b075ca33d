"""A task module as a user writes one: loaded by the tests through TASKS_MODULES and `--tasks`.

Its steps record what they were given in `SEEN` (when run in-process), so tests can check the
context a task gets.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from orchestrator.tasks import TaskContext, step, task_type

#: (task, attempt, config) of every call, in-process.
SEEN: list[tuple[str, int, Any]] = []


class Crunch(msgspec.Struct):
    """The EXECUTE step's config: how many numbers to add up."""

    size: int = 10


class Resize(msgspec.Struct):
    """The `resize` task type's config."""

    width: int
    height: int


@step("EXECUTE", timeout=30, retries=2, backoff=0, config=Crunch)
def crunch(ctx: TaskContext) -> dict[str, Any]:
    """Adds 0..size-1; fails its first attempt when the config says so."""
    SEEN.append(("crunch", ctx.attempt, ctx.config))
    ctx.progress(0.5, "half way")
    if ctx.attempt == 1 and ctx.config.size == 13:
        raise ValueError("unlucky size")
    return {"total": sum(range(ctx.config.size)), "attempt": ctx.attempt}


@step("VALIDATE")
async def check(ctx: TaskContext) -> dict[str, Any]:
    """An async step: runs on the event loop."""
    SEEN.append(("check", ctx.attempt, ctx.config))
    await asyncio.sleep(0)
    return {"checked": True, "workflow": ctx.workflow_id}


@task_type("resize", retries=1, config=Resize)
def resize(ctx: TaskContext) -> dict[str, Any]:
    """A standalone task type."""
    return {"pixels": ctx.config.width * ctx.config.height, "task": ctx.task_id}
