"""What the Orchestrator adds to the domain's and the engine's refusals."""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.history.replay import missing_version


class LifecycleError(RuntimeError):
    """The Orchestrator is used outside its `async with` block, or entered a second time."""


class StartRefused(RuntimeError):
    """The database cannot be driven from here: another process or Orchestrator holds it, or it
    is not a log this release can open. Nothing was started."""

    def __init__(self, database: str, reason: str) -> None:
        self.database = database
        self.reason = reason
        super().__init__(f"cannot start an Orchestrator on {database}: {reason}")


class VersionNotFound(LookupError):
    """Time travel to a version the workflow's stream does not have (yet)."""

    def __init__(self, workflow_id: int, version: int, count: int) -> None:
        self.workflow_id = workflow_id
        self.version = version
        self.count = count
        super().__init__(missing_version(workflow_id, version, count))


class WaitTimeout(TimeoutError):
    """A workflow (or task) did not reach one of the awaited states within the timeout."""

    def __init__(
        self, kind: str, aggregate_id: int, states: Iterable[str], timeout: float, now: str
    ) -> None:
        self.kind = kind
        self.aggregate_id = aggregate_id
        #: The awaited states, in lifecycle order.
        self.states = tuple(states)
        self.timeout = timeout
        #: Where it was when the wait gave up ("EXECUTE, its EXECUTE step running").
        self.last_state = now
        super().__init__(
            f"{kind} {aggregate_id} did not reach {_either(self.states)} within {timeout:g} s; "
            f"it is {now}"
        )


def _either(names: tuple[str, ...]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} or {names[-1]}"
