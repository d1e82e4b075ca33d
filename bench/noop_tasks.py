"""A user task module whose step in every state does nothing: the engine's own cost per step,
for bench_user_tasks.py (sync tasks in the worker pool; NOOP_ASYNC=1: async ones on the loop)."""

from __future__ import annotations

import os
from typing import Any

from orchestrator.tasks import TaskContext, step

STATES = ("INIT", "PREPARE", "EXECUTE", "VALIDATE", "COMPLETE")


def noop(ctx: TaskContext) -> dict[str, Any]:
    """Nothing: returns an empty result."""
    return {}


async def noop_async(ctx: TaskContext) -> dict[str, Any]:
    """Nothing, on the event loop."""
    return {}


# One function serves every state (a function may carry several @step marks).
for _state in STATES:
    chosen = noop_async if os.environ.get("NOOP_ASYNC") == "1" else noop
    step(_state, name=f"noop-{_state.lower()}")(chosen)
