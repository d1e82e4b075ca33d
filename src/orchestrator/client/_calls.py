"""Every route as a `Call`: method, path, query, body bytes, Idempotency-Key and how to read
the answer. Shared by the blocking and the async client, which only send them.

A call is built once per method call, so its retries send the same body bytes under the same
key: the server then answers a repeat with the first answer instead of running it again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
import msgspec

from orchestrator import __version__
from orchestrator.client._retry import RETRY_STATUSES, retry_after
from orchestrator.client.errors import UnexpectedResponse, api_error
from orchestrator.client.types import (
    Activity,
    Event,
    EventPage,
    ExecutionStatus,
    Health,
    RetryResult,
    ServiceInfo,
    StateMachine,
    Stats,
    StepResult,
    Task,
    Transition,
    Workflow,
    WorkflowStarted,
)

T = TypeVar("T")

IDEMPOTENCY_KEY = "Idempotency-Key"
#: What a caller passes to `update` (the default) for a field it wants left as it is.
Unset = msgspec.UnsetType
UNSET = msgspec.UNSET

_encode = msgspec.json.Encoder().encode


def _decoder(kind: type[T]) -> Callable[[bytes], T]:
    return msgspec.json.Decoder(kind).decode


_workflow = _decoder(Workflow)
_workflows = _decoder(list[Workflow])
_started = _decoder(WorkflowStarted)
_step = _decoder(StepResult)
_retry = _decoder(RetryResult)
_status = _decoder(ExecutionStatus)
_task = _decoder(Task)
_tasks = _decoder(list[Task])
_transitions = _decoder(list[Transition])
_events = _decoder(list[Event])
_event_page = _decoder(EventPage)
_stats = _decoder(Stats)
_activity = _decoder(Activity)
_health = _decoder(Health)
_info = _decoder(ServiceInfo)
_state_machine = _decoder(StateMachine)


def _nothing(body: bytes) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One API request and how to read its answer; every attempt sends exactly this."""

    method: str
    path: str
    decode: Callable[[bytes], T]
    params: Mapping[str, str | int] | None = None
    body: bytes | None = None
    idempotency_key: str | None = None
    #: Statuses besides 2xx whose body is still the answer (GET /health's 503 `degraded`).
    also_ok: frozenset[int] = frozenset()
    #: Statuses sent again after a pause (none for /health, whose 503 is an answer).
    retry_statuses: frozenset[int] = RETRY_STATUSES

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """A fresh request for one attempt (a request's body stream is read once)."""
        headers: dict[str, str] = {}
        if self.body is not None:
            headers["Content-Type"] = "application/json"
        if self.idempotency_key is not None:
            headers[IDEMPOTENCY_KEY] = self.idempotency_key
        return http.build_request(
            self.method, self.path, params=self.params, content=self.body, headers=headers
        )

    def result(self, response: httpx.Response) -> T:
        """The decoded answer, or the ApiError the response stands for."""
        status = response.status_code
        if response.is_success or status in self.also_ok:
            try:
                return self.decode(response.content)
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                if response.is_success:
                    raise UnexpectedResponse(self.method, self.path, status, str(exc)) from exc
        raise api_error(
            status,
            response.content,
            method=self.method,
            path=self.path,
            retry_after=retry_after(response),
            idempotency_key=self.idempotency_key,
        )


def _command(
    method: str,
    path: str,
    decode: Callable[[bytes], T],
    key: str | None,
    body: Mapping[str, Any] | None = None,
) -> Call[T]:
    """A POST, PUT or DELETE: with a body encoded once and a key (the caller's, or a new one)."""
    return Call(
        method,
        path,
        decode,
        body=None if body is None else _encode(body),
        idempotency_key=key if key is not None else str(uuid.uuid4()),
    )


def _id(value: int) -> int:
    """An id for a path; anything but an int (a string could add path segments) is refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"an id must be an int, got {value!r}")
    return value


def _query(**params: str | int | None) -> dict[str, str | int]:
    return {name: value for name, value in params.items() if value is not None}


def _config(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if config is None else dict(config)


# Workflows: the original routes -------------------------------------------------------------


def start(
    name: str,
    *,
    description: str | None,
    config: Mapping[str, Any] | None,
    auto_start: bool,
    key: str | None,
) -> Call[WorkflowStarted]:
    """POST /workflow/start."""
    body = {
        "name": name,
        "description": description,
        "config": _config(config),
        "auto_start": auto_start,
    }
    return _command("POST", "/workflow/start", _started, key, body)


def get(workflow_id: int, *, at_version: int | None) -> Call[Workflow]:
    """GET /workflow/{id}, optionally as it was after its `at_version`-th event."""
    return Call("GET", f"/workflow/{_id(workflow_id)}", _workflow, _query(at_version=at_version))


def next_step(workflow_id: int, *, key: str | None) -> Call[StepResult]:
    """POST /workflow/{id}/next."""
    return _command("POST", f"/workflow/{_id(workflow_id)}/next", _step, key)


def retry(workflow_id: int, *, key: str | None) -> Call[RetryResult]:
    """POST /workflow/{id}/retry."""
    return _command("POST", f"/workflow/{_id(workflow_id)}/retry", _retry, key)


def cancel(workflow_id: int, *, key: str | None) -> Call[StepResult]:
    """POST /workflow/{id}/cancel."""
    return _command("POST", f"/workflow/{_id(workflow_id)}/cancel", _step, key)


def delete(workflow_id: int, *, key: str | None) -> Call[None]:
    """DELETE /workflow/{id}."""
    return _command("DELETE", f"/workflow/{_id(workflow_id)}", _nothing, key)


# Workflows: CRUD and execution --------------------------------------------------------------


def create(
    name: str, *, description: str | None, config: Mapping[str, Any] | None, key: str | None
) -> Call[Workflow]:
    """POST /workflows: created in INIT, not started."""
    body = {"name": name, "description": description, "config": _config(config)}
    return _command("POST", "/workflows", _workflow, key, body)


def update(
    workflow_id: int,
    *,
    name: str | Unset,
    description: str | Unset | None,
    config: Mapping[str, Any] | Unset | None,
    key: str | None,
) -> Call[Workflow]:
    """PUT /workflows/{id}: only the fields given are sent; the others keep their value."""
    body: dict[str, Any] = {}
    if not isinstance(name, Unset):
        body["name"] = name
    if not isinstance(description, Unset):
        body["description"] = description
    if not isinstance(config, Unset):
        body["config"] = _config(config)
    return _command("PUT", f"/workflows/{_id(workflow_id)}", _workflow, key, body)


def list_workflows(*, status: str | None, skip: int, limit: int) -> Call[list[Workflow]]:
    """GET /workflows."""
    params = _query(status_filter=status, skip=skip, limit=limit)
    return Call("GET", "/workflows", _workflows, params)


def workflow_tasks(workflow_id: int) -> Call[list[Task]]:
    """GET /workflows/{id}/tasks."""
    return Call("GET", f"/workflows/{_id(workflow_id)}/tasks", _tasks)


def transitions(workflow_id: int) -> Call[list[Transition]]:
    """GET /workflows/{id}/transitions."""
    return Call("GET", f"/workflows/{_id(workflow_id)}/transitions", _transitions)


def launch(workflow_id: int, *, key: str | None) -> Call[StepResult]:
    """POST /execution/workflows/{id}/start."""
    return _command("POST", f"/execution/workflows/{_id(workflow_id)}/start", _step, key)


def status(workflow_id: int) -> Call[ExecutionStatus]:
    """GET /execution/workflows/{id}/status."""
    return Call("GET", f"/execution/workflows/{_id(workflow_id)}/status", _status)


# Standalone tasks ---------------------------------------------------------------------------


def create_task(
    name: str,
    task_type: str,
    *,
    config: Mapping[str, Any] | None,
    workflow_id: int | None,
    description: str | None,
    max_retries: int,
    key: str | None,
) -> Call[Task]:
    """POST /tasks."""
    body = {
        "name": name,
        "task_type": task_type,
        "config": _config(config),
        "workflow_id": workflow_id,
        "description": description,
        "max_retries": max_retries,
    }
    return _command("POST", "/tasks", _task, key, body)


def get_task(task_id: int) -> Call[Task]:
    """GET /tasks/{id}."""
    return Call("GET", f"/tasks/{_id(task_id)}", _task)


def list_tasks(
    *, workflow_id: int | None, status: str | None, skip: int, limit: int
) -> Call[list[Task]]:
    """GET /tasks."""
    params = _query(workflow_id=workflow_id, status=status, skip=skip, limit=limit)
    return Call("GET", "/tasks", _tasks, params)


def delete_task(task_id: int, *, key: str | None) -> Call[None]:
    """DELETE /tasks/{id}."""
    return _command("DELETE", f"/tasks/{_id(task_id)}", _nothing, key)


# History and service ------------------------------------------------------------------------


def events(*, after: int, limit: int, type: str | None, stream: str | None) -> Call[EventPage]:
    """GET /events."""
    params = _query(after=after, limit=limit, type=type, stream=stream)
    return Call("GET", "/events", _event_page, params)


def workflow_events(workflow_id: int) -> Call[list[Event]]:
    """GET /workflow/{id}/events."""
    return Call("GET", f"/workflow/{_id(workflow_id)}/events", _events)


def head() -> Call[EventPage]:
    """GET /events past any position: no events, only the log's current `head`."""
    return Call("GET", "/events", _event_page, {"after": 2**63 - 1, "limit": 1})


def stats() -> Call[Stats]:
    """GET /execution/stats."""
    return Call("GET", "/execution/stats", _stats)


def activity(minutes: int = 60) -> Call[Activity]:
    """GET /execution/activity: started and finished per minute, the last `minutes` (1-60)."""
    return Call("GET", "/execution/activity", _activity, {"minutes": minutes})


def health() -> Call[Health]:
    """GET /health: a 503 `degraded` is an answer here, not an error, and is not retried."""
    return Call("GET", "/health", _health, also_ok=frozenset({503}), retry_statuses=frozenset())


def info() -> Call[ServiceInfo]:
    """GET /."""
    return Call("GET", "/", _info)


def state_machine() -> Call[StateMachine]:
    """GET /state-machine."""
    return Call("GET", "/state-machine", _state_machine)


# The client's connection settings -----------------------------------------------------------


def http_options(
    base_url: str, token: str | None, timeout: float | httpx.Timeout, headers: Mapping[str, str]
) -> dict[str, Any]:
    """Keyword arguments for httpx.Client and httpx.AsyncClient alike."""
    sent = {"Accept": "application/json", "User-Agent": f"orchestrator-client/{__version__}"}
    sent.update(headers)
    if token is not None:
        if not token or token != token.strip() or not token.isascii():
            raise ValueError("token must be non-empty ASCII without spaces at either end")
        sent["Authorization"] = f"Bearer {token}"
    return {"base_url": base_url, "timeout": timeout, "headers": sent}
