"""The standalone task types: what `task_type` may be, what config each takes, and its work."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.engine.executor import TaskCancelled, cancellation

#: Longest `sleep` a task may ask for, in seconds.
MAX_SLEEP_SECONDS = 3600.0
#: Most `iterations` a compute task or a workflow's EXECUTE step may be asked for (about a
#: minute of work on these machines; a thread past TASK_TIMEOUT cannot be stopped, so unbounded
#: work would tie the pool up).
MAX_ITERATIONS = 100_000_000

TaskWork = Callable[[], dict[str, Any]]
#: Checks a task's config and returns its work (InvalidTaskConfig if it cannot be run).
WorkFactory = Callable[[dict[str, Any]], TaskWork]


class InvalidTaskConfig(ValueError):
    """A task's type or config is not one this service can run."""


def _number(config: dict[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidTaskConfig(f"config {key} must be a number, got {value!r}")
    return float(value)


def sleep_work(config: dict[str, Any]) -> TaskWork:
    """`sleep`: waits `duration` seconds (default 1, at most an hour); stops at once when the
    task is cancelled or deleted, freeing its thread."""
    duration = _number(config, "duration", 1.0)
    if not 0 <= duration <= MAX_SLEEP_SECONDS:
        raise InvalidTaskConfig(
            f"config duration must be between 0 and {MAX_SLEEP_SECONDS:g} seconds, got {duration:g}"
        )

    def work() -> dict[str, Any]:
        if cancellation().wait(duration):
            raise TaskCancelled(f"the sleep of {duration:g} s was cancelled")
        return {"status": "slept", "duration": duration}

    return work


def iterations_of(config: dict[str, Any], default: int) -> int:
    """Config `iterations`: an integer from 0 to MAX_ITERATIONS, else InvalidTaskConfig."""
    iterations = config.get("iterations", default)
    if isinstance(iterations, bool) or not isinstance(iterations, int):
        raise InvalidTaskConfig(f"config iterations must be an integer, got {iterations!r}")
    if not 0 <= iterations <= MAX_ITERATIONS:
        raise InvalidTaskConfig(
            f"config iterations must be between 0 and {MAX_ITERATIONS}, got {iterations}"
        )
    return iterations


#: Iterations summed between two looks at the cancellation signal (a few tens of milliseconds).
_CHUNK = 1_000_000


def sum_of_squares(iterations: int, cancelled: threading.Event) -> int:
    """The sum of i*i for i below `iterations`; TaskCancelled as soon as `cancelled` is seen set.

    A hundred million iterations take about a minute: looking at the signal between chunks lets
    a cancelled or timed-out computation free its thread within a fraction of a second.
    """
    total = 0
    for start in range(0, iterations, _CHUNK):
        if cancelled.is_set():
            raise TaskCancelled(f"the computation was cancelled after {start} iterations")
        total += sum(i * i for i in range(start, min(start + _CHUNK, iterations)))
    return total


def compute_work(config: dict[str, Any]) -> TaskWork:
    """`compute`: the sum of i*i for i below `iterations` (default 1000)."""
    iterations = iterations_of(config, 1000)

    def work() -> dict[str, Any]:
        total = sum_of_squares(iterations, cancellation())
        return {"status": "computed", "iterations": iterations, "computation_result": total}

    return work


#: The types that need no settings; tests swap entries here.
TASK_TYPES: dict[str, WorkFactory] = {
    "sleep": sleep_work,
    "compute": compute_work,
}


@dataclass(frozen=True)
class TaskTypes:
    """The built-in TASK_TYPES plus the types built from settings (`http_request`)."""

    configured: Mapping[str, WorkFactory] = field(default_factory=dict)

    def names(self) -> list[str]:
        """The built-in types' names."""
        return sorted({*TASK_TYPES, *self.configured})

    def prepare(self, task_type: str, config: dict[str, Any]) -> TaskWork:
        """The work a task of this type and config does; InvalidTaskConfig if it cannot be run."""
        factory = self.configured.get(task_type) or TASK_TYPES.get(task_type)
        if factory is None:
            allowed = ", ".join(sorted({*TASK_TYPES, *self.configured}))
            raise InvalidTaskConfig(f"task_type must be one of {allowed}, got {task_type!r}")
        return factory(config)


def prepare_work(task_type: str, config: dict[str, Any]) -> TaskWork:
    """As TaskTypes().prepare: the built-in types only, none that needs settings."""
    return TaskTypes().prepare(task_type, config)
