"""Workflow states and triggers, named as the HTTP API names them."""

from __future__ import annotations

import enum


class State(enum.Enum):
    """Where a workflow is in its lifecycle."""

    INIT = "INIT"
    PREPARE = "PREPARE"
    EXECUTE = "EXECUTE"
    VALIDATE = "VALIDATE"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class Trigger(enum.Enum):
    """What moves a workflow from one state to another."""

    PREPARE = "prepare"
    EXECUTE = "execute"
    VALIDATE = "validate"
    COMPLETE = "complete"
    FAIL = "fail"
    CANCEL = "cancel"
    RETRY = "retry"


#: States whose task runs and whose success fires a forward trigger.
RUNNING_STATES = (State.INIT, State.PREPARE, State.EXECUTE, State.VALIDATE)

#: States no trigger leaves (FAILED is left by `retry`, so it is not here).
FINAL_STATES = frozenset({State.COMPLETE, State.CANCELLED})


def is_running(state: State) -> bool:
    """True while the workflow still has a task ahead of it."""
    return state in RUNNING_STATES


def is_terminal(state: State) -> bool:
    """True when the workflow will not move again by itself (COMPLETE, FAILED, CANCELLED)."""
    return state not in RUNNING_STATES
