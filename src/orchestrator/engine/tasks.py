"""The task registry: which task runs in each state, and the standalone task types users add.

It starts with the built-in tasks (engine/builtin_tasks.py); `@step` replaces one for every
workflow, `@task_type` adds a type for `POST /tasks` (engine/task_specs.py). A task is a
callable `(TaskContext) -> dict`: a plain function runs in a worker thread, an `async def` on
the event loop. Returning a dict fires the state's forward trigger with that dict as the
recorded result; raising fails the attempt (and the step once its retries are used up).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import msgspec

from orchestrator.domain.states import State
from orchestrator.engine.builtin_tasks import BUILT_IN_STEPS, DEFAULT_ITERATIONS
from orchestrator.engine.task_context import TaskContext
from orchestrator.engine.task_specs import TASK_STATES, TaskSpec, declared_in
from orchestrator.engine.task_types import TASK_TYPES

__all__ = ["DEFAULT_ITERATIONS", "TaskContext", "TaskFunction", "TaskRegistry", "checked_result"]

TaskFunction = Callable[[TaskContext], dict[str, Any]]

#: Type names no user type may take: the built-in ones.
RESERVED_TYPES = frozenset({*TASK_TYPES, "http_request"})


class DuplicateTask(ValueError):
    """Two tasks were declared for one state, or two task types under one name."""


class TaskRegistry:
    """Which task runs in which state (starts with the built-ins), and the user's task types."""

    def __init__(self) -> None:
        self._steps: dict[State, TaskSpec] = dict(BUILT_IN_STEPS)
        self._types: dict[str, TaskSpec] = {}

    def register(
        self, state: State, function: TaskFunction, name: str | None = None, **options: Any
    ) -> None:
        """Run `function` for `state` from now on, replacing what ran there (for embedding and
        tests; task modules use `@step`). `options` are TaskSpec's (timeout, retries, ...)."""
        if state not in TASK_STATES:
            raise ValueError(f"{state.value} has no task; tasks run in {_task_states()}")
        task_name = name or str(getattr(function, "__name__", "task"))
        source = str(getattr(function, "__module__", "?"))
        self._steps[state] = TaskSpec(name=task_name, function=function, source=source, **options)

    def add_step(self, state: State, spec: TaskSpec) -> None:
        """Take a declared step; DuplicateTask if another user task has the state already."""
        current = self._steps[state]
        if current.source != "built-in" and current.function is not spec.function:
            raise DuplicateTask(
                f"two tasks for {state.value}: {current.name!r} ({current.source}) and "
                f"{spec.name!r} ({spec.source})"
            )
        self._steps[state] = spec

    def add_type(self, spec: TaskSpec) -> None:
        """Take a declared task type; DuplicateTask if its name is taken."""
        if spec.name in RESERVED_TYPES:
            raise DuplicateTask(f"task type {spec.name!r} ({spec.source}) is a built-in type")
        current = self._types.get(spec.name)
        if current is not None and current.function is not spec.function:
            raise DuplicateTask(
                f"two task types named {spec.name!r}: in {current.source} and {spec.source}"
            )
        self._types[spec.name] = spec

    def add_module(self, module: ModuleType) -> int:
        """Take every step and task type `module` declares; how many."""
        steps, types = declared_in(module)
        for state, spec in steps:
            self.add_step(state, spec)
        for spec in types:
            self.add_type(spec)
        return len(steps) + len(types)

    def spec_of(self, state: State) -> TaskSpec:
        """The task that runs in `state` now."""
        try:
            return self._steps[state]
        except KeyError:
            raise ValueError(f"{state.value} has no task; tasks run in {_task_states()}") from None

    def name_of(self, state: State) -> str | None:
        """The name of the task registered for `state`, None if the state has none."""
        spec = self._steps.get(state)
        return spec.name if spec else None

    def lookup(self, state: State) -> tuple[str, Callable[..., Any]]:
        """The (name, callable) registered for `state`."""
        spec = self.spec_of(state)
        return spec.name, spec.function

    def task_type(self, name: str) -> TaskSpec | None:
        """The user task type `name`, None if there is none (built-in types are elsewhere)."""
        return self._types.get(name)

    def type_names(self) -> list[str]:
        """The user task types' names, sorted."""
        return sorted(self._types)

    def steps(self) -> dict[State, TaskSpec]:
        """The task of each state, in the states' order."""
        return {state: self._steps[state] for state in TASK_STATES}

    def check_config(self, config: dict[str, Any]) -> None:
        """Refuse, before anything is recorded, a workflow config one of the steps cannot take
        (InvalidTaskConfig naming the field)."""
        for spec in self._steps.values():
            spec.config_for(config)


_result_encoder = msgspec.json.Encoder()
#: The largest result a task may return, encoded: a result is kept in the log, the workflow's
#: read model and every read of it, so one runaway dict must not bloat them all.
MAX_RESULT_BYTES = 1024 * 1024


def checked_result(result: Any) -> dict[str, Any]:
    """`result` as the log will give it back (JSON values: tuples become lists, keys strings);
    TypeError (or msgspec's) if the log cannot store it.

    Refusing it before it reaches the append fails the step with a clear error instead of
    breaking the write path; giving back the stored form keeps the state the command service
    remembers equal to the state folded from the log.
    """
    if not isinstance(result, dict):
        raise TypeError(f"task returned {type(result).__name__}, expected a dict")
    try:
        encoded = _result_encoder.encode(result)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"task returned a result that is not JSON: {exc}") from None
    if len(encoded) > MAX_RESULT_BYTES:
        raise ValueError(
            f"task returned a result of {len(encoded):,} bytes as JSON, over the limit of "
            f"{MAX_RESULT_BYTES:,}: keep large data elsewhere (a file, a store) and return "
            "where it is"
        )
    stored: dict[str, Any] = msgspec.json.decode(encoded)
    return stored


def _task_states() -> str:
    return ", ".join(state.value for state in TASK_STATES)
