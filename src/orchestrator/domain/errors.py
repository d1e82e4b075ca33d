"""Errors the domain raises; `http/errors.py` maps each to a status code."""

from __future__ import annotations

from collections.abc import Sequence


class DomainError(Exception):
    """Base of every refusal the domain makes."""


class WorkflowNotFound(DomainError):
    """No workflow has this id (or it was deleted)."""

    def __init__(self, workflow_id: int) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"workflow {workflow_id} does not exist")


class InvalidTransition(DomainError):
    """The command is not allowed in the workflow's (or task's) current state."""

    def __init__(
        self,
        workflow_id: int,
        state: str,
        action: str,
        allowed: Sequence[str],
        hint: str = "",
        *,
        kind: str = "workflow",
    ) -> None:
        self.workflow_id = workflow_id
        self.kind = kind
        self.state = state
        self.action = action
        self.allowed = list(allowed)
        allowed_text = ", ".join(self.allowed) if self.allowed else "nothing"
        message = f"{kind} {workflow_id} is {state}; cannot {action}; allowed: {allowed_text}"
        super().__init__(f"{message} ({hint})" if hint else message)


class TaskNotFound(DomainError):
    """No standalone task has this id (or it was deleted)."""

    def __init__(self, task_id: int) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id} does not exist")


class StepInProgress(DomainError):
    """A step of the workflow is already running, so another command must wait."""

    def __init__(self, workflow_id: int, state: str, allowed: Sequence[str] = ("cancel",)) -> None:
        self.workflow_id = workflow_id
        self.state = state
        self.allowed = list(allowed)
        allowed_text = ", ".join(self.allowed) if self.allowed else "nothing"
        super().__init__(
            f"workflow {workflow_id} is running its {state} step; wait for it to finish; "
            f"allowed: {allowed_text}"
        )
