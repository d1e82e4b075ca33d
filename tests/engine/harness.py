"""A runtime for the engine tests, from the one factory with no HTTP, and its log read back.

Streams are read from `runtime.store` and shown one line per event (`StepStarted INIT`,
`WorkflowTransitioned INIT->PREPARE`), so a test states the exact sequence it expects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from orchestrator.domain.aggregates import TASK, WORKFLOW
from orchestrator.domain.commands import StartWorkflow
from orchestrator.domain.events import (
    Event,
    StepFailed,
    StepStarted,
    StepSucceeded,
    WorkflowTransitioned,
)
from orchestrator.domain.states import State
from orchestrator.domain.tasks import (
    TaskEvent,
    TaskRunFailed,
    TaskRunPickedUp,
    TaskRunStarted,
)
from orchestrator.engine.tasks import TaskRegistry
from orchestrator.eventstore.base import RecordedEvent
from orchestrator.runtime import Runtime, build_runtime
from orchestrator.settings import Settings
from tests.waiting import wait_for_async

T = TypeVar("T")

#: How long any wait in these tests may take before it counts as a failure.
DEADLINE = 5.0

#: A workflow the engine runs by itself, and one that waits for `next` (the service picks ids).
AUTOMATIC = StartWorkflow(workflow_id=0, name="automatic")
MANUAL = StartWorkflow(workflow_id=0, name="manual", auto_start=False)

#: The forward moves of a workflow, as `describe` shows them.
FORWARD = (
    "WorkflowTransitioned INIT->PREPARE",
    "WorkflowTransitioned PREPARE->EXECUTE",
    "WorkflowTransitioned EXECUTE->VALIDATE",
    "WorkflowTransitioned VALIDATE->COMPLETE",
)


def engine_settings(database_url: str = "memory://", **overrides: Any) -> Settings:
    """Instant built-in tasks and no log file, on `database_url`, with `overrides`."""
    return Settings(database_url=database_url, task_time_scale=0, log_file="", **overrides)


@contextlib.asynccontextmanager
async def running(settings: Settings, registry: TaskRegistry) -> AsyncIterator[Runtime]:
    """A started runtime from `build_runtime`, stopped on exit (what is in flight stays so)."""
    runtime = build_runtime(settings, registry)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def quiesce(runtime: Runtime) -> None:
    """Return once the engine drives no workflow and no task: every outcome is recorded."""
    async with asyncio.timeout(DEADLINE):
        await runtime.coordinator.wait_idle()
        await runtime.tasks.wait_idle()


async def wait_until(condition: Callable[[], bool], *, what: str) -> None:
    """Poll `condition` on the loop until it is true (the engine runs meanwhile)."""

    async def check() -> bool:
        return condition()

    await eventually(check, bool, what=what)


async def eventually(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], *, what: str
) -> T:
    """The first value of `probe` that `done` accepts, within DEADLINE."""
    return await wait_for_async(probe, done, what=what, timeout=DEADLINE, interval=0.002)


def lifecycle(*states: State) -> list[str]:
    """The events of an automatic workflow's successful steps in `states`, in order."""
    lines: list[str] = []
    for state in states:
        lines += [f"StepStarted {state.value}", f"StepSucceeded {state.value}"]
        lines += [
            line for line in FORWARD if line.startswith(f"WorkflowTransitioned {state.value}")
        ]
    return lines


#: Every event of an automatic workflow that runs to COMPLETE and finalizes, after its start.
FULL_LIFE = lifecycle(State.INIT, State.PREPARE, State.EXECUTE, State.VALIDATE, State.COMPLETE)


def describe(event: Event | TaskEvent) -> str:
    """One line for an event: its type, and the state or run it concerns."""
    name = type(event).__name__
    if isinstance(event, StepStarted | StepSucceeded | StepFailed):
        return f"{name} {event.state.value}"
    if isinstance(event, WorkflowTransitioned):
        return f"{name} {event.from_state.value}->{event.to_state.value}"
    if isinstance(event, TaskRunStarted | TaskRunPickedUp):
        return f"{name} {event.attempt}"
    if isinstance(event, TaskRunFailed):
        return f"{name} will_retry={event.will_retry}"
    return name


async def workflow_stream(runtime: Runtime, workflow_id: int) -> list[RecordedEvent]:
    """A workflow's stream as the log holds it."""
    return await runtime.store.read_stream(WORKFLOW.stream_id(workflow_id))


async def workflow_events(runtime: Runtime, workflow_id: int) -> list[Event]:
    """A workflow's events, decoded."""
    return WORKFLOW.decode_all(await workflow_stream(runtime, workflow_id))


async def workflow_lines(runtime: Runtime, workflow_id: int) -> list[str]:
    """A workflow's events as `describe` shows them."""
    return [describe(event) for event in await workflow_events(runtime, workflow_id)]


async def task_events(runtime: Runtime, task_id: int) -> list[TaskEvent]:
    """A standalone task's events, decoded."""
    return TASK.decode_all(await runtime.store.read_stream(TASK.stream_id(task_id)))


async def task_lines(runtime: Runtime, task_id: int) -> list[str]:
    """A standalone task's events as `describe` shows them."""
    return [describe(event) for event in await task_events(runtime, task_id)]


def only(events: Sequence[Any], kind: type[Any]) -> list[Any]:
    """The events of one type, in order."""
    return [event for event in events if isinstance(event, kind)]
