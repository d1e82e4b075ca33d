"""Commands: what a client or the engine asks a workflow to do. `decide` accepts or refuses them."""

from __future__ import annotations

from typing import Any

import msgspec

from orchestrator.domain.states import State


class StartWorkflow(msgspec.Struct, frozen=True, kw_only=True):
    """Create a workflow in INIT; automatic ones then run by themselves."""

    workflow_id: int
    name: str
    description: str | None = None
    config: dict[str, Any] = {}
    auto_start: bool = True


class CreateWorkflow(msgspec.Struct, frozen=True, kw_only=True):
    """Create a workflow that waits in INIT, not started, until LaunchWorkflow."""

    workflow_id: int
    name: str
    description: str | None = None
    config: dict[str, Any] = {}


class LaunchWorkflow(msgspec.Struct, frozen=True, kw_only=True):
    """Start a created workflow: it then runs through its states by itself."""


class EditWorkflow(msgspec.Struct, frozen=True, kw_only=True):
    """Change name, description and config; fields left UNSET keep their value."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType | None = msgspec.UNSET
    config: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET


class BeginStep(msgspec.Struct, frozen=True, kw_only=True):
    """Start the task of the workflow's current state (or finalize, once it is COMPLETE)."""

    task: str


class AdvanceWorkflow(msgspec.Struct, frozen=True, kw_only=True):
    """A client's `next`: run the current state's task and fire its forward trigger."""

    task: str


class FinishStep(msgspec.Struct, frozen=True, kw_only=True):
    """Record the result of the step started in `state`, and fire the state's forward trigger."""

    state: State
    result: dict[str, Any]
    duration: float = 0.0


class FailStep(msgspec.Struct, frozen=True, kw_only=True):
    """Record that the step started in `state` raised or timed out, and fire `fail`."""

    state: State
    error: str
    duration: float = 0.0
    timed_out: bool = False


class RetryWorkflow(msgspec.Struct, frozen=True, kw_only=True):
    """Send a FAILED workflow back to INIT with one more retry counted."""


class CancelWorkflow(msgspec.Struct, frozen=True, kw_only=True):
    """Stop a running workflow at once; a step still running is discarded when it returns."""


class DeleteWorkflow(msgspec.Struct, frozen=True, kw_only=True):
    """Hide a finished workflow from reads; its history stays in the log."""


class ReportProgress(msgspec.Struct, frozen=True, kw_only=True):
    """Record how far the step running in `state` got (refused once that step is over)."""

    state: State
    fraction: float
    note: str | None = None


class FailStepAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """Record that attempt `attempt` of the step running in `state` failed; it runs again after
    `retry_in` seconds (refused if that attempt's outcome was recorded already)."""

    state: State
    attempt: int
    error: str
    duration: float = 0.0
    timed_out: bool = False
    retry_in: float = 0.0


Command = (
    StartWorkflow
    | CreateWorkflow
    | LaunchWorkflow
    | EditWorkflow
    | BeginStep
    | AdvanceWorkflow
    | FinishStep
    | FailStep
    | ReportProgress
    | FailStepAttempt
    | RetryWorkflow
    | CancelWorkflow
    | DeleteWorkflow
)
