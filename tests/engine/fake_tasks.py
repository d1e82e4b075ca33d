"""Task functions for the engine tests: they succeed, fail, hold their step until the test releases
it, or wait for their cancellation signal. Each one notes its calls, so a test can check that a
step ran exactly as often as it should.

Steps run in worker threads: the notes are kept under a lock, and every wait has a backstop so
that no thread outlives a test that forgot to release it.
"""

from __future__ import annotations

import threading
from typing import Any

from orchestrator.domain.states import State
from orchestrator.engine.executor import TaskCancelled
from orchestrator.engine.tasks import TaskContext, TaskFunction, TaskRegistry

#: How long a held task waits for its release if a test never gives it.
BACKSTOP = 10.0

#: The states that run a task, in the order an automatic workflow runs them (COMPLETE: finalize).
TASK_STATES = (State.INIT, State.PREPARE, State.EXECUTE, State.VALIDATE, State.COMPLETE)


def step_of(context: TaskContext) -> State:
    """The state of the step a fake runs (fakes run only as workflow steps)."""
    assert context.state is not None, "a step's context names its state"
    return context.state


class TaskFailure(RuntimeError):
    """What the failing fakes raise."""


class Calls:
    """The states whose tasks were called, in call order, and whether each saw its signal set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: list[State] = []
        self._cancelled: list[bool] = []

    def note(self, context: TaskContext) -> None:
        """Count one call of a task in `context.state`."""
        with self._lock:
            self._states.append(step_of(context))

    def note_return(self, context: TaskContext) -> None:
        """Remember whether the step's cancellation signal was set when its task returned."""
        with self._lock:
            self._cancelled.append(context.cancelled.is_set())

    @property
    def states(self) -> list[State]:
        """Every call so far, by state."""
        with self._lock:
            return list(self._states)

    @property
    def cancelled_at_return(self) -> list[bool]:
        """For each held task that returned: was it told to stop by then?"""
        with self._lock:
            return list(self._cancelled)

    def count(self, state: State) -> int:
        """How many times the task of `state` was called."""
        return self.states.count(state)


def result_of(state: State, retries: int = 0) -> dict[str, Any]:
    """What `succeeding` returns for a step, so tests can compare recorded results exactly."""
    return {"state": state.value, "retries": retries}


def succeeding(calls: Calls) -> TaskFunction:
    """A task that returns `result_of` its step at once."""

    def succeed(context: TaskContext) -> dict[str, Any]:
        calls.note(context)
        return result_of(step_of(context), context.retries)

    return succeed


def failing(calls: Calls, message: str, *, attempts: int | None = None) -> TaskFunction:
    """A task that raises TaskFailure(message); with `attempts`, only while `retries < attempts`."""

    def fail(context: TaskContext) -> dict[str, Any]:
        calls.note(context)
        if attempts is None or context.retries < attempts:
            raise TaskFailure(message)
        return result_of(step_of(context), context.retries)

    return fail


def until_cancelled(calls: Calls, entered: threading.Event) -> TaskFunction:
    """A task that waits for its cancellation signal (a timeout, a cancel, a stop), then raises
    TaskCancelled as a well-behaved long task does."""

    def wait_for_signal(context: TaskContext) -> dict[str, Any]:
        calls.note(context)
        entered.set()
        if not context.cancelled.wait(BACKSTOP):
            raise TimeoutError("nothing ever told this task to stop")
        raise TaskCancelled(f"the {step_of(context).value} step was told to stop")

    return wait_for_signal


class Gate:
    """Holds every `held` task in its thread until `release`; `entered` is set once one began."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._released = threading.Event()

    def release(self) -> None:
        """Let every held task return (now and from now on)."""
        self._released.set()

    def pass_through(self) -> None:
        """In a worker thread: say it entered, then block until released."""
        self.entered.set()
        if not self._released.wait(BACKSTOP):
            raise TimeoutError("the test never released the gate")

    def held(self, calls: Calls) -> TaskFunction:
        """A task that returns `result_of` its step once released, whatever its signal says: a
        task that ignores cancellation, whose late result the engine must discard."""

        def wait_for_release(context: TaskContext) -> dict[str, Any]:
            calls.note(context)
            self.pass_through()
            calls.note_return(context)
            return result_of(step_of(context), context.retries)

        return wait_for_release


def task_name(state: State) -> str:
    """The name `registry_of` gives the task of `state` (StepStarted records it)."""
    return f"fake-{state.value.lower()}"


def registry_of(calls: Calls, **tasks: TaskFunction) -> TaskRegistry:
    """A registry where every state runs `succeeding`, except the states named in `tasks`
    (by their upper-case names, e.g. PREPARE=...)."""
    registry = TaskRegistry()
    for state in TASK_STATES:
        registry.register(state, tasks.get(state.value, succeeding(calls)), name=task_name(state))
    return registry
