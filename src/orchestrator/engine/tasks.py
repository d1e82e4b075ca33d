"""The built-in state tasks and the registry that lets a user plug in their own.

A task is a blocking callable `(TaskContext) -> dict` run in a worker thread. Returning a dict
fires the state's forward trigger with that dict as the recorded result; raising fires `fail`.
A long task should watch `ctx.cancelled` (wait on it instead of sleeping, or check it between
pieces of work): it is set when the workflow is cancelled, the step times out or the server
stops, and a task that returns then frees its thread at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from orchestrator.domain.states import State
from orchestrator.engine.executor import TaskCancelled
from orchestrator.engine.task_types import InvalidTaskConfig, iterations_of, sum_of_squares


@dataclass(frozen=True)
class TaskContext:
    """What a task knows about the step it runs."""

    workflow_id: int
    state: State
    config: dict[str, Any]
    retries: int
    time_scale: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)
    #: Set when the step should stop early: the workflow was cancelled, the step timed out, or
    #: the server is stopping (the step then runs again at the next start).
    cancelled: threading.Event = field(default_factory=threading.Event)

    def simulate_work(self, seconds: float) -> None:
        """Wait `seconds` scaled by TASK_TIME_SCALE (0 makes it instant); TaskCancelled if the
        step is cancelled meanwhile."""
        scaled = seconds * self.time_scale
        if scaled > 0 and self.cancelled.wait(scaled):
            raise TaskCancelled(f"the {self.state.value} step was cancelled")


TaskFunction = Callable[[TaskContext], dict[str, Any]]

DEFAULT_ITERATIONS = 5000


def check_config(config: dict[str, Any]) -> None:
    """Refuse, before anything is recorded, config values the built-in tasks would choke on."""
    iterations_of(config, DEFAULT_ITERATIONS)
    if not isinstance(config.get("simulate_failure", False), bool):
        raise InvalidTaskConfig("config simulate_failure must be true or false")
    fail_until = config.get("fail_until_retry", 1)
    if isinstance(fail_until, bool) or not isinstance(fail_until, int) or fail_until < 0:
        raise InvalidTaskConfig(
            f"config fail_until_retry must be a non-negative integer, got {fail_until!r}"
        )


_result_encoder = msgspec.json.Encoder()


def checked_result(result: Any) -> dict[str, Any]:
    """`result` as the log will give it back (JSON values: tuples become lists, keys strings);
    TypeError (or msgspec's) if the log cannot store it.

    Refusing it before it reaches the append fails the step with a clear error instead of
    breaking the write path; giving back the stored form keeps the state the command service
    remembers equal to the state folded from the log.
    """
    if not isinstance(result, dict):
        raise TypeError(f"task returned {type(result).__name__}, expected a dict")
    stored: dict[str, Any] = msgspec.json.decode(_result_encoder.encode(result))
    return stored


class SimulatedFailure(RuntimeError):
    """Raised by initialize when the workflow's config asks for a failure on this attempt."""


def initialize(ctx: TaskContext) -> dict[str, Any]:
    """INIT: fails while `simulate_failure` is set and `retries < fail_until_retry` (default 1)."""
    ctx.simulate_work(0.5)
    if ctx.config.get("simulate_failure"):
        fail_until = ctx.config.get("fail_until_retry", 1)
        if isinstance(fail_until, int) and ctx.retries < fail_until:
            raise SimulatedFailure(
                f"simulated failure on attempt {ctx.retries + 1} "
                f"(fails while retries < {fail_until})"
            )
    return {"status": "initialized", "message": f"Workflow {ctx.workflow_id} initialized"}


def prepare(ctx: TaskContext) -> dict[str, Any]:
    """PREPARE: simulated preparation of three files."""
    ctx.simulate_work(0.7)
    return {"status": "prepared", "files_created": 3, "message": "Resources prepared"}


def execute(ctx: TaskContext) -> dict[str, Any]:
    """EXECUTE: real work, the sum of i*i for i below `iterations` (config, default 5000)."""
    ctx.simulate_work(1.0)
    iterations = iterations_of(ctx.config, DEFAULT_ITERATIONS)
    total = sum_of_squares(iterations, ctx.cancelled)
    return {"status": "executed", "computation_result": total, "iterations": iterations}


def validate(ctx: TaskContext) -> dict[str, Any]:
    """VALIDATE: five simulated checks, all passing."""
    ctx.simulate_work(0.6)
    return {"status": "validated", "validation_passed": True, "checks_performed": 5}


def finalize(ctx: TaskContext) -> dict[str, Any]:
    """COMPLETE: runs once on entering COMPLETE."""
    ctx.simulate_work(0.3)
    return {"status": "completed", "message": f"Workflow {ctx.workflow_id} completed"}


BUILT_IN_TASKS: dict[State, tuple[str, TaskFunction]] = {
    State.INIT: ("initialize", initialize),
    State.PREPARE: ("prepare", prepare),
    State.EXECUTE: ("execute", execute),
    State.VALIDATE: ("validate", validate),
    State.COMPLETE: ("finalize", finalize),
}


class TaskRegistry:
    """Which callable runs in which state; starts with the built-ins."""

    def __init__(self) -> None:
        self._tasks = dict(BUILT_IN_TASKS)

    def register(self, state: State, function: TaskFunction, name: str | None = None) -> None:
        """Run `function` for `state` from now on (INIT..VALIDATE, or COMPLETE for finalize)."""
        if state not in BUILT_IN_TASKS:
            raise ValueError(f"{state.value} has no task; tasks run in {_task_states()}")
        self._tasks[state] = (name or str(getattr(function, "__name__", "task")), function)

    def name_of(self, state: State) -> str | None:
        """The name of the task registered for `state`, None if the state has none."""
        entry = self._tasks.get(state)
        return entry[0] if entry else None

    def lookup(self, state: State) -> tuple[str, TaskFunction]:
        """The (name, callable) registered for `state`."""
        try:
            return self._tasks[state]
        except KeyError:
            raise ValueError(f"{state.value} has no task; tasks run in {_task_states()}") from None


def _task_states() -> str:
    return ", ".join(state.value for state in BUILT_IN_TASKS)
