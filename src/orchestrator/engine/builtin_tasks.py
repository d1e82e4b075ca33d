"""The built-in tasks: simulated work for each state, the default and the demo.

Each takes about the seconds given to `simulate_work` (times TASK_TIME_SCALE); EXECUTE does real
work (a sum of squares), and INIT fails on request (config `simulate_failure`), to show retries.
"""

from __future__ import annotations

from typing import Any

from orchestrator.domain.states import State
from orchestrator.engine.task_context import TaskContext
from orchestrator.engine.task_specs import TaskSpec
from orchestrator.engine.task_types import InvalidTaskConfig, iterations_of, sum_of_squares

DEFAULT_ITERATIONS = 5000


def check_execute_config(config: dict[str, Any]) -> None:
    """Refuse, before anything is recorded, an `iterations` the built-in EXECUTE would choke on."""
    iterations_of(config, DEFAULT_ITERATIONS)


def check_initialize_config(config: dict[str, Any]) -> None:
    """Refuse, before anything is recorded, failure settings the built-in INIT cannot follow."""
    if not isinstance(config.get("simulate_failure", False), bool):
        raise InvalidTaskConfig("config simulate_failure must be true or false")
    fail_until = config.get("fail_until_retry", 1)
    if isinstance(fail_until, bool) or not isinstance(fail_until, int) or fail_until < 0:
        raise InvalidTaskConfig(
            f"config fail_until_retry must be a non-negative integer, got {fail_until!r}"
        )


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


#: The built-in task of each state that runs one.
BUILT_IN_STEPS: dict[State, TaskSpec] = {
    State.INIT: TaskSpec(name="initialize", function=initialize, check=check_initialize_config),
    State.PREPARE: TaskSpec(name="prepare", function=prepare),
    State.EXECUTE: TaskSpec(name="execute", function=execute, check=check_execute_config),
    State.VALIDATE: TaskSpec(name="validate", function=validate),
    State.COMPLETE: TaskSpec(name="finalize", function=finalize),
}
