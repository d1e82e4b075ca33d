"""Waiting for a workflow or task to reach a state: woken by the read models, never polling.

Each look reads the read model after noting the projector's position; if the state is not the
one wanted, the wait sleeps until the projector applies anything past that position (its own
wake-up, `Projector.wait_for`), so no change can slip between the look and the sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from orchestrator.domain.states import State, is_terminal
from orchestrator.domain.workflow import Workflow
from orchestrator.embedded.errors import LifecycleError
from orchestrator.runtime import Runtime

T = TypeVar("T")

#: What `wait` waits for unless told: states a workflow will not leave by itself.
TERMINAL_STATES = frozenset({State.COMPLETE, State.FAILED, State.CANCELLED})


async def wait_until(
    runtime: Runtime,
    read: Callable[[], Awaitable[T]],
    reached: Callable[[T], bool],
    *,
    timeout: float,
    gave_up: Callable[[T], Exception],
    what: str,
) -> T:
    """The first value `read` gives that `reached` accepts; `gave_up(last value)` is raised
    after `timeout` seconds, LifecycleError if the runtime begins to stop meanwhile."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        position = runtime.projector.position
        value = await read()
        if reached(value):
            return value
        if not await _read_models_pass(runtime, position, deadline, what):
            raise gave_up(value)


async def _read_models_pass(runtime: Runtime, position: int, deadline: float, what: str) -> bool:
    """Wait until the read models apply something past `position`; False at `deadline`."""
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining <= 0:
        return False
    moved = asyncio.ensure_future(runtime.projector.wait_for(position + 1, remaining))
    stopping = asyncio.ensure_future(runtime.stopping.wait())
    try:
        await asyncio.wait({moved, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        moved.cancel()
        stopping.cancel()
    if runtime.stopping.is_set():
        raise LifecycleError(f"the Orchestrator stopped while waiting for {what}")
    try:
        moved.result()
    except TimeoutError:
        return False
    return True


def has_reached(workflow: Workflow, wanted: frozenset[State]) -> bool:
    """In one of `wanted`; a terminal state counts once its last step is recorded (COMPLETE's
    finalize), as the HTTP client's `wait` has it; a running state as soon as it is entered."""
    if workflow.state not in wanted:
        return False
    return not is_terminal(workflow.state) or workflow.step is None


def where(workflow: Workflow) -> str:
    """Where the workflow is, in a few words: "EXECUTE, its EXECUTE step running"."""
    if workflow.step is None:
        return workflow.state.value
    return f"{workflow.state.value}, its {workflow.step.value} step running"
