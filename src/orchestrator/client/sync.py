"""`Client`: the blocking client. Each method builds its call in _calls.py and sends it here,
with the retries _retry.py decides; `stream` and `wait` drive _sse.py and _waiting.py."""

from __future__ import annotations

import builtins
import time
from collections.abc import Generator, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx

from orchestrator.client import _calls as calls
from orchestrator.client._calls import UNSET, Call, Unset
from orchestrator.client._retry import DEFAULT_RETRY, Attempts, RetryPolicy
from orchestrator.client._sse import STREAM_RETRY, Feed, check_idle_timeout, stream_url
from orchestrator.client._waiting import WaitPlan
from orchestrator.client.types import (
    TERMINAL_STATES,
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


class EventStream:
    """The log's events as they are recorded, reconnecting by itself. Iterate it; leave it
    with `break` (or close it, or use it in a `with` block) and its connection is closed."""

    def __init__(self, events: Generator[Event, None, None]) -> None:
        self._events = events

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def close(self) -> None:
        """Close the connection; iterating afterwards ends at once."""
        self._events.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class Client:
    """A blocking client for the orchestrator's HTTP API; use it in a `with` block.

    `token` is sent as `Authorization: Bearer <token>`. Every command carries a new
    Idempotency-Key (or the one given), kept for its retries, so a retry after a lost answer
    never runs a command twice. `retry` says how often requests are sent again after a
    connection error, a 429 or a 503. `transport` replaces httpx's (e.g. for tests).
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        token: str | None = None,
        timeout: float | httpx.Timeout = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retry_policy = retry
        options = calls.http_options(base_url, token, timeout, headers or {})
        self._http = httpx.Client(transport=transport, **options)

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, call: Call[T]) -> T:
        attempts = Attempts(self.retry_policy, call)
        while True:
            try:
                response = self._http.send(call.request(self._http))
            except httpx.TransportError as error:
                pause = attempts.after_error(error)
            else:
                answered = attempts.after_response(response)
                if answered is None:
                    return call.result(response)
                pause = answered
            time.sleep(pause)

    # Workflows ------------------------------------------------------------------------------

    def start(
        self,
        name: str,
        *,
        description: str | None = None,
        config: Mapping[str, Any] | None = None,
        auto_start: bool = True,
        idempotency_key: str | None = None,
    ) -> WorkflowStarted:
        """Start a workflow (POST /workflow/start); with `auto_start` it runs by itself."""
        return self._run(
            calls.start(
                name,
                description=description,
                config=config,
                auto_start=auto_start,
                key=idempotency_key,
            )
        )

    def get(self, workflow_id: int, *, at_version: int | None = None) -> Workflow:
        """A workflow now, or as it was after its `at_version`-th event."""
        return self._run(calls.get(workflow_id, at_version=at_version))

    def next(self, workflow_id: int, *, idempotency_key: str | None = None) -> StepResult:
        """Run the current step and move on (answers once the transition is recorded)."""
        return self._run(calls.next_step(workflow_id, key=idempotency_key))

    def retry(self, workflow_id: int, *, idempotency_key: str | None = None) -> RetryResult:
        """Send a FAILED workflow back to INIT."""
        return self._run(calls.retry(workflow_id, key=idempotency_key))

    def cancel(self, workflow_id: int, *, idempotency_key: str | None = None) -> StepResult:
        """Cancel a workflow that has not finished."""
        return self._run(calls.cancel(workflow_id, key=idempotency_key))

    def delete(self, workflow_id: int, *, idempotency_key: str | None = None) -> None:
        """Delete a finished (or never started) workflow; it is 404 afterwards."""
        self._run(calls.delete(workflow_id, key=idempotency_key))

    def create(
        self,
        name: str,
        *,
        description: str | None = None,
        config: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Workflow:
        """Create a workflow that waits in INIT (POST /workflows); `launch` starts it."""
        return self._run(
            calls.create(name, description=description, config=config, key=idempotency_key)
        )

    def update(
        self,
        workflow_id: int,
        *,
        name: str | Unset = UNSET,
        description: str | Unset | None = UNSET,
        config: Mapping[str, Any] | Unset | None = UNSET,
        idempotency_key: str | None = None,
    ) -> Workflow:
        """Edit a workflow that is not running; fields not given keep their value."""
        return self._run(
            calls.update(
                workflow_id,
                name=name,
                description=description,
                config=config,
                key=idempotency_key,
            )
        )

    def list(
        self, *, status: str | None = None, skip: int = 0, limit: int = 100
    ) -> builtins.list[Workflow]:
        """Workflows in id order, optionally only those in `status` (limit at most 1000)."""
        return self._run(calls.list_workflows(status=status, skip=skip, limit=limit))

    def launch(self, workflow_id: int, *, idempotency_key: str | None = None) -> StepResult:
        """Start a created workflow (POST /execution/workflows/{id}/start)."""
        return self._run(calls.launch(workflow_id, key=idempotency_key))

    def status(self, workflow_id: int) -> ExecutionStatus:
        """A workflow's compact status (GET /execution/workflows/{id}/status)."""
        return self._run(calls.status(workflow_id))

    def transitions(self, workflow_id: int) -> builtins.list[Transition]:
        """A workflow's transitions, in order."""
        return self._run(calls.transitions(workflow_id))

    def workflow_tasks(self, workflow_id: int) -> builtins.list[Task]:
        """The standalone tasks created with this `workflow_id`."""
        return self._run(calls.workflow_tasks(workflow_id))

    def wait(
        self,
        workflow_id: int,
        timeout: float = 60.0,
        *,
        states: Iterable[str] = TERMINAL_STATES,
        max_pause: float = 0.5,
    ) -> Workflow:
        """The workflow once it is in one of `states` (by default COMPLETE, FAILED or
        CANCELLED, with its last step recorded); WaitTimeout after `timeout` seconds."""
        plan = WaitPlan(workflow_id, timeout, states, max_pause)
        while True:
            workflow = self.get(workflow_id)
            if plan.reached(workflow):
                return workflow
            time.sleep(plan.pause(workflow))

    # Standalone tasks -----------------------------------------------------------------------

    def create_task(
        self,
        name: str,
        task_type: str,
        *,
        config: Mapping[str, Any] | None = None,
        workflow_id: int | None = None,
        description: str | None = None,
        max_retries: int = 0,
        idempotency_key: str | None = None,
    ) -> Task:
        """Create a task (`sleep`, `compute` or `http_request`) and queue it to run."""
        return self._run(
            calls.create_task(
                name,
                task_type,
                config=config,
                workflow_id=workflow_id,
                description=description,
                max_retries=max_retries,
                key=idempotency_key,
            )
        )

    def get_task(self, task_id: int) -> Task:
        """A standalone task."""
        return self._run(calls.get_task(task_id))

    def list_tasks(
        self,
        *,
        workflow_id: int | None = None,
        status: str | None = None,
        skip: int = 0,
        limit: int = 100,
    ) -> builtins.list[Task]:
        """Tasks in id order, optionally of one workflow and in one status."""
        return self._run(
            calls.list_tasks(workflow_id=workflow_id, status=status, skip=skip, limit=limit)
        )

    def delete_task(self, task_id: int, *, idempotency_key: str | None = None) -> None:
        """Delete a task, stopping it if it is pending or running."""
        self._run(calls.delete_task(task_id, key=idempotency_key))

    # History and service --------------------------------------------------------------------

    def events(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        type: str | None = None,
        stream: str | None = None,
    ) -> EventPage:
        """A page of the log after position `after`, optionally of one type or stream."""
        return self._run(calls.events(after=after, limit=limit, type=type, stream=stream))

    def workflow_events(self, workflow_id: int) -> builtins.list[Event]:
        """Every event of one workflow, in version order."""
        return self._run(calls.workflow_events(workflow_id))

    def stream(
        self,
        after: int | None = None,
        *,
        retry: RetryPolicy = STREAM_RETRY,
        idle_timeout: float = 60.0,
    ) -> EventStream:
        """Events recorded after position `after` (by default: from now on), as they come.

        A connection that drops or ends is made again with `Last-Event-ID`, so every event
        arrives once, in order; after `retry.max_retries` failures in a row without a sign of
        life, ConnectionFailed. `idle_timeout` is the longest silence tolerated (the server
        sends a keep-alive every SSE_KEEPALIVE_SECONDS, 15 by default).
        """
        feed = Feed(after, retry, check_idle_timeout(idle_timeout))
        return EventStream(self._stream(feed))

    def _stream(self, feed: Feed) -> Generator[Event, None, None]:
        url = stream_url(self._http)
        while True:
            if feed.position is None:
                feed.position = self._run(calls.head()).head
            try:
                response = self._http.send(feed.request(self._http), stream=True)
                try:
                    if response.status_code != 200:
                        response.read()
                        pause = feed.after_refusal(response)
                    else:
                        for line in response.iter_lines():
                            event = feed.line(line)
                            if event is not None:
                                yield event
                        pause = feed.after_end(url)
                finally:
                    response.close()
            except httpx.TransportError as error:
                pause = feed.after_error(url, error)
            time.sleep(pause)

    def stats(self) -> Stats:
        """Pool and workflow counters."""
        return self._run(calls.stats())

    def activity(self, minutes: int = 60) -> Activity:
        """Workflows started and finished per minute over the last `minutes` (1 to 60)."""
        return self._run(calls.activity(minutes))

    def health(self) -> Health:
        """The server's health; `status` is `degraded` (with a `reason`) while it cannot write."""
        return self._run(calls.health())

    def info(self) -> ServiceInfo:
        """The service's name, version and links (GET /)."""
        return self._run(calls.info())

    def state_machine(self) -> StateMachine:
        """The states, triggers and transition table."""
        return self._run(calls.state_machine())
