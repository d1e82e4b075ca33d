"""Events: the permanent facts of a workflow's life, stored in the log forever.

Stored events never change shape: a new field needs a default, and no field ever changes its type
or its tag. Each event carries `at`, the moment the fact happened (UTC).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from orchestrator.domain.states import State, Trigger
from orchestrator.domain.upcasting import CURRENT_SCHEMA, upcast


class _EventBase(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    at: datetime


class WorkflowStarted(_EventBase, frozen=True, kw_only=True, tag=True):
    """Recorded when a client starts a workflow: the first event of every workflow stream."""

    workflow_id: int
    name: str
    description: str | None = None
    config: dict[str, Any] = {}
    auto_start: bool = True


class WorkflowCreated(_EventBase, frozen=True, kw_only=True, tag=True):
    """Recorded by `POST /workflows`: the workflow waits in INIT until it is launched."""

    workflow_id: int
    name: str
    description: str | None = None
    config: dict[str, Any] = {}


class WorkflowLaunched(_EventBase, frozen=True, kw_only=True, tag=True):
    """Recorded when a created workflow is started: from now on it runs by itself."""


class WorkflowEdited(_EventBase, frozen=True, kw_only=True, tag=True):
    """Recorded when a client changes a workflow's name, description or config."""

    name: str
    description: str | None = None
    config: dict[str, Any] = {}


class StepStarted(_EventBase, frozen=True, kw_only=True, tag=True):
    """Recorded just before a state's task is handed to the worker pool."""

    state: State
    task: str


class StepSucceeded(_EventBase, frozen=True, kw_only=True, tag=True):
    """Recorded when a state's task returned; `result` is what it returned."""

    state: State
    result: dict[str, Any]
    duration: float = 0.0


class StepFailed(_EventBase, frozen=True, kw_only=True, tag=True):
    """Recorded when a state's task raised or ran past the task timeout."""

    state: State
    error: str
    duration: float = 0.0
    timed_out: bool = False


class StepProgressed(_EventBase, frozen=True, kw_only=True, tag=True):
    """The running step's task reported how far it got (`ctx.progress`; throttled)."""

    state: State
    #: From 0 to 1.
    fraction: float
    note: str | None = None


class StepAttemptFailed(_EventBase, frozen=True, kw_only=True, tag=True):
    """One attempt of the running step raised or timed out, and its task allows another: the
    step stays running and is tried again after `retry_in` seconds."""

    state: State
    #: Which attempt failed (1 for the first).
    attempt: int
    error: str
    duration: float = 0.0
    timed_out: bool = False
    retry_in: float = 0.0


class WorkflowTransitioned(_EventBase, frozen=True, kw_only=True, tag=True):
    """Recorded when the workflow moves along one row of the transition table."""

    from_state: State
    to_state: State
    trigger: Trigger


class WorkflowDeleted(_EventBase, frozen=True, kw_only=True, tag=True):
    """Tombstone: recorded when a client deletes a finished workflow; reads 404 afterwards."""


Event = (
    WorkflowStarted
    | WorkflowCreated
    | WorkflowLaunched
    | WorkflowEdited
    | StepStarted
    | StepSucceeded
    | StepFailed
    | StepProgressed
    | StepAttemptFailed
    | WorkflowTransitioned
    | WorkflowDeleted
)

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)


def event_type(event: Event) -> str:
    """The name the log stores the event under (its tag)."""
    return type(event).__name__


def encode_event(event: Event) -> bytes:
    """The event as the JSON bytes stored in the log."""
    return _encoder.encode(event)


def decode_event(data: bytes, schema_version: int = CURRENT_SCHEMA) -> Event:
    """An event back from its stored JSON bytes, upcast from an older schema if need be."""
    return _decoder.decode(upcast(data, schema_version))


def stream_id(workflow_id: int) -> str:
    """The log stream that holds one workflow's events."""
    return f"workflow-{workflow_id}"
