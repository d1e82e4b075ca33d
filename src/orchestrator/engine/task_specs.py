"""Declaring tasks: `@step(state)` and `@task_type(name)`, and the TaskSpec each makes.

The decorators only mark the function (no registry is touched at import, so importing a task
module twice, or in a test, changes nothing); `declared_in(module)` finds the marks, and the
server's TaskRegistry takes them in at start-up (engine/task_loading.py).
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

import msgspec

from orchestrator.domain.states import State
from orchestrator.engine.task_types import InvalidTaskConfig

F = TypeVar("F", bound=Callable[..., Any])

#: The states that run a task: the four running states, and COMPLETE (finalize, run once).
TASK_STATES = (State.INIT, State.PREPARE, State.EXECUTE, State.VALIDATE, State.COMPLETE)
#: Longest pause between two attempts, however many failed before.
MAX_BACKOFF_SECONDS = 300.0
MAX_RETRIES = 100
_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_STEP_MARK = "__orchestrator_steps__"
_TYPE_MARK = "__orchestrator_task_types__"


@dataclass(frozen=True)
class TaskSpec:
    """One task: its function and how the engine runs it."""

    name: str
    #: `(ctx) -> dict`, or `async (ctx) -> dict`.
    function: Callable[..., Any]
    #: Seconds an attempt may run; None: the server's TASK_TIMEOUT.
    timeout: float | None = None
    #: Attempts after the first when one raises or times out (each recorded in the history).
    retries: int = 0
    #: Seconds before the first retry, doubled for each one after (at most MAX_BACKOFF_SECONDS).
    backoff: float = 1.0
    #: A msgspec Struct the config must convert to; the task then gets the Struct as ctx.config.
    config_type: type[Any] | None = None
    #: A check of a dict config (the built-in tasks'); InvalidTaskConfig when it would fail.
    check: Callable[[dict[str, Any]], None] | None = None
    #: Where it was declared, for messages ("mypkg.tasks", "built-in").
    source: str = "built-in"

    def __post_init__(self) -> None:
        if not 0 < len(self.name) <= 255 or not self.name.isprintable():
            raise ValueError(f"a task name is 1 to 255 printable characters, not {self.name!r}")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"task {self.name!r}: timeout must be a positive number of seconds")
        if isinstance(self.retries, bool) or not 0 <= self.retries <= MAX_RETRIES:
            raise ValueError(f"task {self.name!r}: retries must be from 0 to {MAX_RETRIES}")
        if not (math.isfinite(self.backoff) and self.backoff >= 0):
            raise ValueError(f"task {self.name!r}: backoff must be 0 or more seconds")
        if self.config_type is not None and not (
            isinstance(self.config_type, type) and issubclass(self.config_type, msgspec.Struct)
        ):
            raise ValueError(f"task {self.name!r}: config must be a msgspec.Struct class")

    @property
    def is_async(self) -> bool:
        """True for an `async def` task, which runs on the event loop, not in a worker thread."""
        return inspect.iscoroutinefunction(self.function)

    def retry_delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt `failed_attempt` (1-based) failed."""
        return min(self.backoff * 2.0 ** (failed_attempt - 1), MAX_BACKOFF_SECONDS)

    def config_for(self, config: dict[str, Any]) -> Any:
        """The config as the task gets it; InvalidTaskConfig naming the field if it cannot."""
        if self.config_type is None:
            if self.check is not None:
                self.check(config)
            # A copy all the way down: the task may change what it is given, and the dict is
            # the remembered workflow's own.
            return msgspec.json.decode(msgspec.json.encode(config))
        try:
            return msgspec.convert(config, self.config_type)
        except msgspec.ValidationError as exc:
            message = str(exc)
            # msgspec names the path inside the config, or none for the config as a whole.
            if " - at `$" in message:
                where = message.replace(" - at `$", " - at `$.config")
            else:
                where = f"{message} - at `$.config`"
            raise InvalidTaskConfig(f"config of task {self.name!r}: {where}") from None


def step(
    state: State | str,
    *,
    timeout: float | None = None,
    retries: int = 0,
    backoff: float = 1.0,
    config: type[Any] | None = None,
    name: str | None = None,
) -> Callable[[F], F]:
    """Run the decorated function as the task of `state` ("INIT", "PREPARE", "EXECUTE",
    "VALIDATE", or "COMPLETE" for the finalize step) in every workflow, instead of the built-in.

    `timeout` (seconds, else TASK_TIMEOUT), `retries` (attempts after a failed one, each after
    `backoff` seconds doubled per retry) and `config` (a msgspec Struct the workflow's config
    must convert to: checked before the workflow is recorded) are the task's own.
    """
    wanted = _task_state(state)

    def mark(function: F) -> F:
        spec = _spec(function, name, timeout, retries, backoff, config)
        setattr(function, _STEP_MARK, (*getattr(function, _STEP_MARK, ()), (wanted, spec)))
        return function

    return mark


def task_type(
    name: str,
    *,
    timeout: float | None = None,
    retries: int = 0,
    backoff: float = 1.0,
    config: type[Any] | None = None,
) -> Callable[[F], F]:
    """Offer the decorated function as the standalone task type `name` (`POST /tasks` with
    `"task_type": name`). `retries` is the default of a request's `max_retries`."""

    if not _NAME.fullmatch(name):
        raise ValueError(
            "a task type is 1 to 64 of a-z, 0-9, '_', '.', '-' starting with a letter, "
            f"not {name!r}"
        )

    def mark(function: F) -> F:
        spec = _spec(function, name, timeout, retries, backoff, config)
        setattr(function, _TYPE_MARK, (*getattr(function, _TYPE_MARK, ()), spec))
        return function

    return mark


def declared_in(module: ModuleType) -> tuple[list[tuple[State, TaskSpec]], list[TaskSpec]]:
    """The steps and task types declared by the module-level functions of `module` (each once,
    however many names it has there; one imported from another module counts too, and the
    registry takes the same function twice as once)."""
    steps: list[tuple[State, TaskSpec]] = []
    types: list[TaskSpec] = []
    seen: set[int] = set()
    for value in list(vars(module).values()):
        if not callable(value) or id(value) in seen:
            continue
        seen.add(id(value))
        steps.extend(getattr(value, _STEP_MARK, ()))
        types.extend(getattr(value, _TYPE_MARK, ()))
    return steps, types


def _task_state(state: State | str) -> State:
    try:
        wanted = state if isinstance(state, State) else State(str(state).upper())
    except ValueError:
        wanted = None
    if wanted not in TASK_STATES:
        names = ", ".join(s.value for s in TASK_STATES)
        raise ValueError(f"a step runs in one of {names}, not {state!r}")
    assert wanted is not None
    return wanted


def _spec(
    function: Callable[..., Any],
    name: str | None,
    timeout: float | None,
    retries: int,
    backoff: float,
    config: type[Any] | None,
) -> TaskSpec:
    return TaskSpec(
        name=name or str(getattr(function, "__name__", "task")),
        function=function,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
        config_type=config,
        source=str(getattr(function, "__module__", "?")),
    )
