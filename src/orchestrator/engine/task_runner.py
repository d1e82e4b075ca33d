"""Runs standalone tasks in their own worker pool (TASK_WORKERS threads, apart from the steps')
and records each run's outcome.

Like workflow steps, runs are at least once: a run that started before a crash runs again on the
next start, and its outcome is recorded once (the append carries the expected version).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from orchestrator.domain.aggregates import TASK
from orchestrator.domain.errors import WorkflowNotFound
from orchestrator.domain.tasks import (
    BeginTaskRun,
    CreateTask,
    DeleteTask,
    FailTaskRun,
    FinishTaskRun,
    PickUpTaskRun,
    Task,
    TaskStatus,
)
from orchestrator.engine.backlog import Backlog
from orchestrator.engine.drivers import Drivers
from orchestrator.engine.driving import drive
from orchestrator.engine.executor import NotStarted, TaskTimedOut, WorkerPool
from orchestrator.engine.ownership import HandOver, Ownership, task_type_key
from orchestrator.engine.retry import record_or_discard, retry_store_errors
from orchestrator.engine.service import Outcome, TaskService, WorkflowService
from orchestrator.engine.task_context import NoRetry, TaskContext
from orchestrator.engine.task_execution import ProgressReporter, run_attempt
from orchestrator.engine.task_specs import TaskSpec
from orchestrator.engine.task_types import InvalidTaskConfig, TaskTypes
from orchestrator.engine.tasks import TaskRegistry
from orchestrator.eventstore.base import Folding

#: Starts a run: given the run's cancellation signal and what to call when a worker picks it up.
RunStarter = Callable[[threading.Event, Callable[[], None]], Awaitable[dict[str, Any]]]

log = logging.getLogger(__name__)

_API = {"actor": "api"}
_ENGINE = {"actor": "engine"}


class TaskRunner:
    """Creates, runs, retries and deletes standalone tasks."""

    def __init__(
        self,
        service: TaskService,
        workflows: WorkflowService,
        pool: WorkerPool,
        *,
        task_timeout: float,
        types: TaskTypes | None = None,
        registry: TaskRegistry | None = None,
        max_queued_runs: int = 1000,
        ownership: Ownership | None = None,
    ) -> None:
        self.service = service
        self.ownership = ownership
        self._types = types or TaskTypes()
        #: The user's task types (`@task_type`), beside the built-in `types`.
        self.registry = registry or TaskRegistry()
        self._workflows = workflows
        self.pool = pool
        self._task_timeout = task_timeout
        self._drivers = Drivers("task", ownership)
        #: Refuses new tasks while too many runs wait for a thread.
        self.backlog = Backlog(pool, lambda: len(self._drivers), max_queued_runs, "task runs")

    async def create(self, command: CreateTask) -> Outcome:
        """Check type, config and workflow, record the task and its first run, and run it."""
        spec = self.registry.task_type(command.task_type)
        if spec is not None:
            spec.config_for(command.config)  # refuses, naming the field, what could never run
        else:
            self._types.prepare(command.task_type, command.config)
        if command.workflow_id is not None:
            workflow = await self._workflows.load(command.workflow_id)
            if workflow is None or workflow.deleted:
                raise WorkflowNotFound(command.workflow_id)
        with self.backlog.admit():
            outcome = await self.service.create(command, _API, [BeginTaskRun()])
            self._drive(outcome.task.task_id, outcome.task)
        return outcome

    async def delete(self, task_id: int) -> Outcome:
        """Cancel the task if it is pending or running (its thread is told to stop), and hide it
        from reads."""
        outcome = await self.service.execute(task_id, DeleteTask(), _API)
        self._drivers.cancel_running(task_id)
        return outcome

    def type_names(self) -> list[str]:
        """Every task type this server runs: the built-in ones and the user's."""
        return sorted({*self._types.names(), *self.registry.type_names()})

    def default_retries(self, task_type: str) -> int:
        """A task's `max_retries` when its request gives none: its type's `retries`, else 0."""
        spec = self.registry.task_type(task_type)
        return spec.retries if spec is not None else 0

    def resume(self, task_ids: Iterable[int]) -> None:
        """After a restart: run again every task that was pending or running."""
        for task_id in task_ids:
            self._drive(task_id)

    async def stop(self, grace: float = 0.0) -> None:
        """Stop driving: runs in hand get `grace` seconds to finish and be recorded; the rest
        resume on the next start."""
        await self._drivers.stop(grace)

    async def wait_idle(self) -> None:
        """Wait until no task is being driven."""
        await self._drivers.wait_idle()

    def _drive(self, task_id: int, known: Task | None = None) -> None:
        self._drivers.start(task_id, self._drive_loop(task_id, known))

    def drive(self, task_id: int) -> None:
        """Drive one task (taken over from another process, or resumed)."""
        self._drive(task_id)

    def is_driving(self, task_id: int) -> bool:
        """True while this process drives the task."""
        return self._drivers.is_driving(task_id)

    def notice(self, events: Sequence[Folding]) -> None:
        """Events the read models took in (from any process): a task cancelled or deleted
        elsewhere while this process runs it has its run told to stop."""
        for recorded in events:
            if recorded.type not in ("TaskCancelled", "TaskDeleted"):
                continue
            found = TASK.parse_stream(recorded.stream_id)
            if found is not None and self._drivers.is_driving(found):
                self._drivers.cancel_running(found)

    def lose(self, task_id: int) -> None:
        """Stop driving a task whose lease another process took over."""
        self._drivers.lose(task_id)

    async def _drive_loop(self, task_id: int, known: Task | None) -> Task | None:
        return await drive(
            lambda: self._load_fresh(task_id),
            self._next_step,
            draining=lambda: self.pool.draining,
            first=known,
        )

    def _next_step(self, task: Task) -> Awaitable[Task | None] | None:
        """Begin a run, or run the one begun; None once the task needs no run."""
        if not task.needs_run():
            return None
        if not task.in_run:
            return self._begin_run(task)
        return self._run(task)

    async def _begin_run(self, task: Task) -> Task | None:
        """Begin the next run; after a failed one, once its type's back-off has passed."""
        spec = self.registry.task_type(task.task_type)
        if task.attempt > 0 and spec is not None and task.updated_at is not None:
            due = task.updated_at.timestamp() + spec.retry_delay(task.attempt)
            left = due - datetime.now(UTC).timestamp()
            if left > 0:
                await asyncio.sleep(left)  # a deleted task is told apart at the append
        return await self._record(task.task_id, BeginTaskRun())

    async def _load_fresh(self, task_id: int) -> Task | None:
        """The task read from the log, retried like `_record` while the store fails (a driver
        that gave up would leave a started run that nobody drives until a restart)."""
        return await retry_store_errors(
            lambda: self.service.load(task_id, fresh=True),
            what=f"task {task_id}: could not read it",
            log=log,
        )

    async def _run(self, task: Task) -> Task | None:
        if await self._left_to_others(task):
            log.info(
                "task %d: its type %r is not loaded here; left to a process that has it",
                task.task_id,
                task.task_type,
            )
            raise HandOver
        started = time.monotonic()
        command: FinishTaskRun | FailTaskRun
        try:
            result = await self._run_in_pool(task, self._starter(task))
        except NotStarted:  # the server stops: the run stays started, to run at the next start
            return None
        except TaskTimedOut as exc:
            command = FailTaskRun(
                attempt=task.attempt,
                error=f"task timed out after {exc.seconds:g} s",
                duration=time.monotonic() - started,
                timed_out=True,
            )
        except Exception as exc:
            command = FailTaskRun(
                attempt=task.attempt,
                error=f"{type(exc).__name__}: {exc}",
                duration=time.monotonic() - started,
                final=isinstance(exc, NoRetry),
            )
        else:
            command = FinishTaskRun(
                attempt=task.attempt, result=result, duration=time.monotonic() - started
            )
        return await self._record(task.task_id, command)

    async def _left_to_others(self, task: Task) -> bool:
        """True if this process lacks the task's type and another live process has it."""
        if self.ownership is None or self.registry.task_type(task.task_type) is not None:
            return False
        if task.task_type in self._types.names():
            return False
        return await self.ownership.runs_elsewhere(task_type_key(task.task_type))

    def _starter(self, task: Task) -> RunStarter:
        """How to start the task's run: its user type's function, or a built-in type's work."""
        spec = self.registry.task_type(task.task_type)
        if spec is not None:
            return lambda cancelled, on_start: self._run_user_type(task, spec, cancelled, on_start)
        if task.task_type not in self._types.names():
            raise InvalidTaskConfig(
                f"task type {task.task_type!r} is not loaded in this server (its task modules "
                "changed since the task was created)"
            )
        work = self._types.prepare(task.task_type, task.config)
        return lambda cancelled, on_start: self.pool.run(
            work, self._task_timeout, on_start=on_start, cancel=cancelled
        )

    async def _run_user_type(
        self,
        task: Task,
        spec: TaskSpec,
        cancelled: threading.Event,
        on_start: Callable[[], None],
    ) -> dict[str, Any]:
        async def note(fraction: float, text: str | None) -> None:
            log.info("task %d (%s): %.0f%% %s", task.task_id, spec.name, fraction * 100, text or "")

        reporter = ProgressReporter(note)
        context = TaskContext(
            workflow_id=task.workflow_id,
            state=None,
            config=spec.config_for(task.config),
            retries=task.retry_count,
            cancelled=cancelled,
            attempt=task.attempt,
            task_name=spec.name,
            task_id=task.task_id,
            _progress=reporter.report,
        )
        try:
            timeout = spec.timeout or self._task_timeout
            return await run_attempt(spec, context, self.pool, timeout, on_start=on_start)
        finally:
            reporter.close()

    async def _run_in_pool(self, task: Task, start: RunStarter) -> dict[str, Any]:
        """Start the run, recording when a worker thread (or the loop) picks it up.

        The task stays PENDING while its run waits in the queue, as the original service
        showed it. The pick-up is recorded while the work already runs; the outcome is recorded
        only after it, so the stream keeps its order.
        """
        picked_up = asyncio.Event()
        with self._drivers.running(task.task_id) as cancelled:
            running = asyncio.ensure_future(start(cancelled, picked_up.set))
            try:
                if task.status is TaskStatus.PENDING:  # not already RUNNING before a restart
                    waiting = asyncio.ensure_future(picked_up.wait())
                    try:
                        await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiting.cancel()
                    if picked_up.is_set():
                        await self._record(task.task_id, PickUpTaskRun(attempt=task.attempt))
                return await running
            finally:
                running.cancel()  # a no-op once it is done; else the driver is being stopped

    async def _record(
        self, task_id: int, command: BeginTaskRun | PickUpTaskRun | FinishTaskRun | FailTaskRun
    ) -> Task | None:
        name = type(command).__name__
        outcome = await record_or_discard(  # as for workflow steps: never lose an outcome
            lambda: self.service.execute(task_id, command, _ENGINE),
            what=f"task {task_id}: could not record {name}",
            discarded=f"task {task_id}: discarded {name}",
            log=log,
        )
        return None if outcome is None else outcome.task
