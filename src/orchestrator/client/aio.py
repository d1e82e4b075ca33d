"""`AsyncClient`: the async twin of sync.py's `Client`, method for method (anyio: asyncio or
trio). Each method builds its call in _calls.py and sends it here, with the retries _retry.py
decides; `stream` and `wait` drive _sse.py and _waiting.py."""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import anyio
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


class AsyncEventStream:
    """The log's events as they are recorded, reconnecting by itself. Use it in an
    `async with` block (or `aclose` it): leaving the block closes its connection at once."""

    def __init__(self, events: AsyncGenerator[Event, None]) -> None:
        self._events = events

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> Event:
        return await self._events.__anext__()

    async def aclose(self) -> None:
        """Close the connection; iterating afterwards ends at once."""
        await self._events.aclose()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class AsyncClient:
    """An async client for the orchestrator's HTTP API; use it in an `async with` block.

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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retry_policy = retry
        options = calls.http_options(base_url, token, timeout, headers or {})
        self._http = httpx.AsyncClient(transport=transport, **options)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(self, call: Call[T]) -> T:
        attempts = Attempts(self.retry_policy, call)
        while True:
            try:
                response = await self._http.send(call.request(self._http))
            except httpx.TransportError as error:
                pause = attempts.after_error(error)
            else:
                answered = attempts.after_response(response)
                if answered is None:
                    return call.result(response)
                pause = answered
            await anyio.sleep(pause)

    # Workflows ------------------------------------------------------------------------------

    async def start(
        self,
        name: str,
        *,
        description: str | None = None,
        config: Mapping[str, Any] | None = None,
        auto_start: bool = True,
        idempotency_key: str | None = None,
    ) -> WorkflowStarted:
        """Start a workflow (POST /workflow/start); with `auto_start` it runs by itself."""
        return await self._run(
            calls.start(
                name,
                description=description,
                config=config,
                auto_start=auto_start,
                key=idempotency_key,
            )
        )

    async def get(self, workflow_id: int, *, at_version: int | None = None) -> Workflow:
        """A workflow now, or as it was after its `at_version`-th event."""
        return await self._run(calls.get(workflow_id, at_version=at_version))

    async def next(self, workflow_id: int, *, idempotency_key: str | None = None) -> StepResult:
        """Run the current step and move on (answers once the transition is recorded)."""
        return await self._run(calls.next_step(workflow_id, key=idempotency_key))

    async def retry(self, workflow_id: int, *, idempotency_key: str | None = None) -> RetryResult:
        """Send a FAILED workflow back to INIT."""
        return await self._run(calls.retry(workflow_id, key=idempotency_key))

    async def cancel(self, workflow_id: int, *, idempotency_key: str | None = None) -> StepResult:
        """Cancel a workflow that has not finished."""
        return await self._run(calls.cancel(workflow_id, key=idempotency_key))

    async def delete(self, workflow_id: int, *, idempotency_key: str | None = None) -> None:
        """Delete a finished (or never started) workflow; it is 404 afterwards."""
        await self._run(calls.delete(workflow_id, key=idempotency_key))

    async def create(
        self,
        name: str,
        *,
        description: str | None = None,
        config: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Workflow:
        """Create a workflow that waits in INIT (POST /workflows); `launch` starts it."""
        return await self._run(
            calls.create(name, description=description, config=config, key=idempotency_key)
        )

    async def update(
        self,
        workflow_id: int,
        *,
        name: str | Unset = UNSET,
        description: str | Unset | None = UNSET,
        config: Mapping[str, Any] | Unset | None = UNSET,
        idempotency_key: str | None = None,
    ) -> Workflow:
        """Edit a workflow that is not running; fields not given keep their value."""
        return await self._run(
            calls.update(
                workflow_id,
                name=name,
                description=description,
                config=config,
                key=idempotency_key,
            )
        )

    async def list(
        self, *, status: str | None = None, skip: int = 0, limit: int = 100
    ) -> builtins.list[Workflow]:
        """Workflows in id order, optionally only those in `status` (limit at most 1000)."""
        return await self._run(calls.list_workflows(status=status, skip=skip, limit=limit))

    async def launch(self, workflow_id: int, *, idempotency_key: str | None = None) -> StepResult:
        """Start a created workflow (POST /execution/workflows/{id}/start)."""
        return await self._run(calls.launch(workflow_id, key=idempotency_key))

    async def status(self, workflow_id: int) -> ExecutionStatus:
        """A workflow's compact status (GET /execution/workflows/{id}/status)."""
        return await self._run(calls.status(workflow_id))

    async def transitions(self, workflow_id: int) -> builtins.list[Transition]:
        """A workflow's transitions, in order."""
        return await self._run(calls.transitions(workflow_id))

    async def workflow_tasks(self, workflow_id: int) -> builtins.list[Task]:
        """The standalone tasks created with this `workflow_id`."""
        return await self._run(calls.workflow_tasks(workflow_id))

    async def wait(
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
            workflow = await self.get(workflow_id)
            if plan.reached(workflow):
                return workflow
            await anyio.sleep(plan.pause(workflow))

    # Standalone tasks -----------------------------------------------------------------------

    async def create_task(
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
        return await self._run(
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

    async def get_task(self, task_id: int) -> Task:
        """A standalone task."""
        return await self._run(calls.get_task(task_id))

    async def list_tasks(
        self,
        *,
        workflow_id: int | None = None,
        status: str | None = None,
        skip: int = 0,
        limit: int = 100,
    ) -> builtins.list[Task]:
        """Tasks in id order, optionally of one workflow and in one status."""
        return await self._run(
            calls.list_tasks(workflow_id=workflow_id, status=status, skip=skip, limit=limit)
        )

    async def delete_task(self, task_id: int, *, idempotency_key: str | None = None) -> None:
        """Delete a task, stopping it if it is pending or running."""
        await self._run(calls.delete_task(task_id, key=idempotency_key))

    # History and service --------------------------------------------------------------------

    async def events(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        type: str | None = None,
        stream: str | None = None,
    ) -> EventPage:
        """A page of the log after position `after`, optionally of one type or stream."""
        return await self._run(calls.events(after=after, limit=limit, type=type, stream=stream))

    async def workflow_events(self, workflow_id: int) -> builtins.list[Event]:
        """Every event of one workflow, in version order."""
        return await self._run(calls.workflow_events(workflow_id))

    def stream(
        self,
        after: int | None = None,
        *,
        retry: RetryPolicy = STREAM_RETRY,
        idle_timeout: float = 60.0,
    ) -> AsyncEventStream:
        """Events recorded after position `after` (by default: from now on), as they come.

        A connection that drops or ends is made again with `Last-Event-ID`, so every event
        arrives once, in order; after `retry.max_retries` failures in a row without a sign of
        life, ConnectionFailed. `idle_timeout` is the longest silence tolerated (the server
        sends a keep-alive every SSE_KEEPALIVE_SECONDS, 15 by default).
        """
        feed = Feed(after, retry, check_idle_timeout(idle_timeout))
        return AsyncEventStream(self._stream(feed))

    async def _stream(self, feed: Feed) -> AsyncGenerator[Event, None]:
        url = stream_url(self._http)
        while True:
            if feed.position is None:
                feed.position = (await self._run(calls.head())).head
            try:
                response = await self._http.send(feed.request(self._http), stream=True)
                try:
                    if response.status_code != 200:
                        await response.aread()
                        pause = feed.after_refusal(response)
                    else:
                        async for line in response.aiter_lines():
                            event = feed.line(line)
                            if event is not None:
                                yield event
                        pause = feed.after_end(url)
                finally:
                    await response.aclose()
            except httpx.TransportError as error:
                pause = feed.after_error(url, error)
            await anyio.sleep(pause)

    async def stats(self) -> Stats:
        """Pool and workflow counters."""
        return await self._run(calls.stats())

    async def activity(self, minutes: int = 60) -> Activity:
        """Workflows started and finished per minute over the last `minutes` (1 to 60)."""
        return await self._run(calls.activity(minutes))

    async def health(self) -> Health:
        """The server's health; `status` is `degraded` (with a `reason`) while it cannot write."""
        return await self._run(calls.health())

    async def info(self) -> ServiceInfo:
        """The service's name, version and links (GET /)."""
        return await self._run(calls.info())

    async def state_machine(self) -> StateMachine:
        """The states, triggers and transition table."""
        return await self._run(calls.state_machine())
