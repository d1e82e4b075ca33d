"""Request bodies and query parameters, as msgspec Structs: what the routes decode.

The same types decode requests and generate `/openapi.json` (see endpoint_table.py), so the
document cannot drift from what the routes accept. Unknown body fields and query parameters are
ignored, as the original API (FastAPI/pydantic defaults) did.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

import msgspec

from orchestrator.domain.states import State
from orchestrator.http.response_types import TaskState

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255, description="1..255 characters")]
Description = Annotated[str, msgspec.Meta(max_length=10_000)]
Config = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description="Free-form JSON object; integers must fit in 64 bits; depth <= 32; at most "
        "MAX_CONFIG_BYTES (64 KiB) as JSON and MAX_CONFIG_KEYS (1000) keys and array items"
    ),
]
Skip = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=1000)]
Id = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


#: A task type's name. Which ones a server takes depends on the task modules it loaded, so the
#: route checks it against the runtime and /openapi.json lists that server's (http/docs.py).
TaskTypeName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        description="A task type this server runs: sleep, compute, http_request, or one of its "
        "task modules' (GET /state-machine lists them)",
    ),
]


class StartWorkflowRequest(msgspec.Struct, kw_only=True):
    """POST /workflow/start."""

    name: Name
    description: Description | None = None
    config: Config | None = None
    auto_start: bool = True


class CreateWorkflowRequest(msgspec.Struct, kw_only=True):
    """POST /workflows: the workflow waits in INIT until /execution/workflows/{id}/start."""

    name: Name
    description: Description | None = None
    config: Config | None = None


class UpdateWorkflowRequest(msgspec.Struct, kw_only=True):
    """PUT /workflows/{id}: fields left out keep their value."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    config: Config | msgspec.UnsetType | None = msgspec.UNSET


class CreateTaskRequest(msgspec.Struct, kw_only=True):
    """POST /tasks: a standalone task, run at once by the worker pool."""

    name: Name
    task_type: TaskTypeName
    workflow_id: Id | None = None
    description: Description | None = None
    config: Config | None = None
    #: Left out: the task type's own `retries` (0 for the built-in types).
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=10)] | msgspec.UnsetType = msgspec.UNSET


class ListOrder(enum.Enum):
    """Which end of a list comes first: the oldest (lowest id) or the newest."""

    ASC = "asc"
    DESC = "desc"


class WorkflowListQuery(msgspec.Struct, kw_only=True):
    """GET /workflows query parameters."""

    skip: Skip = 0
    limit: Limit = 100
    status_filter: State | None = None
    #: Only workflows whose name contains this (ASCII letters in any case); empty: all.
    name: Annotated[str, msgspec.Meta(max_length=255)] | None = None
    #: `asc` (the default, oldest first, as the original) or `desc` (newest first).
    order: ListOrder = ListOrder.ASC


class TaskListQuery(msgspec.Struct, kw_only=True):
    """GET /tasks query parameters."""

    skip: Skip = 0
    limit: Limit = 100
    workflow_id: Id | None = None
    status: TaskState | None = None
    #: The original service's name for `status`; `status` wins when both are given.
    status_filter: TaskState | None = None


class WorkflowReadQuery(msgspec.Struct, kw_only=True):
    """GET /workflow/{id} query parameters: `at_version` reads the state after that event."""

    at_version: Id | None = None


class EventsQuery(msgspec.Struct, kw_only=True):
    """GET /events query parameters."""

    after: Skip = 0
    limit: Limit = 100
    type: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    stream: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class StreamQuery(msgspec.Struct, kw_only=True):
    """GET /events/stream query parameters (Last-Event-ID, when sent, wins over `after`)."""

    after: Skip | None = None


class ActivityQuery(msgspec.Struct, kw_only=True):
    """GET /execution/activity query parameters."""

    #: How many of the last minutes to answer (the current one included).
    minutes: Annotated[int, msgspec.Meta(ge=1, le=60)] = 60
