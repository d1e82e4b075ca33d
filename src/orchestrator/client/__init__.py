"""A Python client for the orchestrator's HTTP API, blocking (`Client`) and async
(`AsyncClient`), built on httpx and msgspec.

```python
from orchestrator.client import Client

with Client("http://127.0.0.1:8000") as client:
    started = client.start("nightly-report", config={"iterations": 10})
    workflow = client.wait(started.workflow_id, timeout=60)
    print(workflow.status, workflow.task_results["EXECUTE"]["computation_result"])
```

It imports nothing of the server: a program that only calls the API loads httpx and msgspec.
"""

from __future__ import annotations

from orchestrator.client._calls import UNSET, Unset
from orchestrator.client._retry import RetryPolicy
from orchestrator.client.aio import AsyncClient, AsyncEventStream
from orchestrator.client.errors import (
    ApiError,
    BadRequest,
    ClientError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    NotFound,
    Overloaded,
    ServerError,
    Unauthorized,
    UnexpectedResponse,
    ValidationFailed,
    WaitTimeout,
)
from orchestrator.client.sync import Client, EventStream
from orchestrator.client.types import (
    TERMINAL_STATES,
    Activity,
    ActivityMinute,
    Cluster,
    CurrentStep,
    Event,
    EventPage,
    ExecutionStatus,
    Health,
    PoolStats,
    ProcessLeases,
    RetryResult,
    ServiceInfo,
    State,
    StateMachine,
    Stats,
    StepResult,
    StepTask,
    Task,
    TaskStatus,
    Transition,
    TransitionRule,
    Workflow,
    WorkflowCounts,
    WorkflowStarted,
)

__all__ = [
    "TERMINAL_STATES",
    "UNSET",
    "Activity",
    "ActivityMinute",
    "ApiError",
    "AsyncClient",
    "AsyncEventStream",
    "BadRequest",
    "Client",
    "ClientError",
    "Cluster",
    "Conflict",
    "ConnectionFailed",
    "CurrentStep",
    "Event",
    "EventPage",
    "EventStream",
    "ExecutionStatus",
    "Forbidden",
    "Health",
    "NotFound",
    "Overloaded",
    "PoolStats",
    "ProcessLeases",
    "RetryPolicy",
    "RetryResult",
    "ServerError",
    "ServiceInfo",
    "State",
    "StateMachine",
    "Stats",
    "StepResult",
    "StepTask",
    "Task",
    "TaskStatus",
    "Transition",
    "TransitionRule",
    "Unauthorized",
    "UnexpectedResponse",
    "Unset",
    "ValidationFailed",
    "WaitTimeout",
    "Workflow",
    "WorkflowCounts",
    "WorkflowStarted",
]
