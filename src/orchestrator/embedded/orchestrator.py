"""The Orchestrator: the server's runtime driven from your own asyncio code (see __init__)."""

from __future__ import annotations

import builtins
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import msgspec

from orchestrator.domain.commands import CreateWorkflow, EditWorkflow, StartWorkflow
from orchestrator.domain.errors import TaskNotFound, WorkflowNotFound
from orchestrator.domain.states import State
from orchestrator.domain.tasks import CreateTask, Task, TaskStatus
from orchestrator.domain.workflow import Workflow
from orchestrator.embedded.arguments import (
    checked_description,
    checked_name,
    checked_retries,
    checked_timeout,
    checked_version,
    page_of,
    state_of,
    status_of,
    stored_config,
)
from orchestrator.embedded.database import claim_database
from orchestrator.embedded.errors import LifecycleError, StartRefused, VersionNotFound, WaitTimeout
from orchestrator.embedded.stats import Stats, stats_of
from orchestrator.embedded.waiting import TERMINAL_STATES, has_reached, wait_until, where
from orchestrator.engine.service import Outcome
from orchestrator.engine.tasks import TaskRegistry
from orchestrator.eventstore.errors import EventStoreError
from orchestrator.history.replay import ReplayedEvent, replay
from orchestrator.projections.models import TASKS, WORKFLOWS
from orchestrator.projections.storage import ListQuery
from orchestrator.runtime import Runtime, build_runtime
from orchestrator.serving import DatabaseLock
from orchestrator.settings import Settings

log = logging.getLogger(__name__)

#: How long a command waits for the read models to include its events. Past it the command's
#: own outcome is returned anyway (it is recorded: raising would invite a second one).
SETTLE_SECONDS = 10.0
#: What `wait_task` waits for unless told.
TERMINAL_TASK_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})


class Orchestrator:
    """An in-process orchestrator: use it inside `async with`, on one event loop.

    `database_url` (`sqlite:///path.db` or `memory://`) and keyword overrides (any field of
    `Settings`: `task_time_scale=0`, `max_workers=8`, ...) apply on top of `settings`, which
    defaults to `Settings()`: the environment and `.env` are not read (pass
    `settings=Settings.from_env()` for that). `registry` supplies the state tasks.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        settings: Settings | None = None,
        registry: TaskRegistry | None = None,
        **overrides: Any,
    ) -> None:
        changes = dict(overrides)
        if database_url is not None:
            if "database_url" in changes:
                raise TypeError("give database_url once: as the first argument or by keyword")
            changes["database_url"] = database_url
        known = {field.name for field in dataclasses.fields(Settings)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(
                f"unknown setting(s) {', '.join(unknown)}; the settings are the fields of "
                "orchestrator.settings.Settings"
            )
        self.settings = dataclasses.replace(settings or Settings(), **changes)
        # A bad database URL is a SettingsError here rather than at entry.
        _ = self.settings.database
        self._registry = registry
        self._runtime: Runtime | None = None
        self._lock: DatabaseLock | None = None
        self._phase = "new"  # then "starting", "running", "stopped"

    def __repr__(self) -> str:
        return f"<Orchestrator {self.settings.database_url!r} {self._phase}>"

    # Lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Orchestrator:
        """Lock the database file, open it, catch the read models up and resume what was in
        flight. StartRefused if the file is held or cannot be driven; LifecycleError if this
        Orchestrator was entered before (make a new one)."""
        if self._phase != "new":
            raise LifecycleError(
                f"this Orchestrator was already started ({self._phase}); an Orchestrator runs "
                "once: make a new one (on the same database, it resumes what was in flight)"
            )
        self._phase = "starting"
        try:
            self._lock = claim_database(self.settings)
            runtime = build_runtime(self.settings, self._registry)
            try:
                await runtime.start()  # on failure it closes what it opened, then raises
            except EventStoreError as exc:  # the original's file, a read-only folder, ...
                raise StartRefused(self.settings.database.path or "memory://", str(exc)) from exc
        except BaseException:
            self._release()
            self._phase = "stopped"
            raise
        self._runtime = runtime
        self._phase = "running"
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop as a server stops on SIGTERM: no new step begins; steps running get
        `shutdown_grace_seconds` to finish and be recorded. Any still running after that stay
        recorded as started and run again when the file is next opened (at least once, their
        outcome recorded once). Then the read models catch up and the file is unlocked."""
        runtime, self._runtime = self._runtime, None
        self._phase = "stopped"
        if runtime is None:
            return
        try:
            runtime.begin_shutdown()
            await runtime.stop()
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _running(self) -> Runtime:
        if self._runtime is not None:
            return self._runtime
        if self._phase == "stopped":
            raise LifecycleError(
                "this Orchestrator has stopped (its `async with` block ended); make a new one to "
                "go on: it resumes what was in flight"
            )
        raise LifecycleError(
            "this Orchestrator is not running: use it inside "
            "`async with Orchestrator(...) as orchestrator:`"
        )

    async def _settled(self, runtime: Runtime, outcome: Outcome) -> Any:
        """Read-your-writes, as the HTTP layer's `settled`: the command's state once the read
        models include it."""
        try:
            await runtime.projector.wait_for(outcome.position, SETTLE_SECONDS)
        except TimeoutError:
            log.warning(
                "the read models did not reach position %d in %g s (they are at %d); returning "
                "the recorded outcome",
                outcome.position,
                SETTLE_SECONDS,
                runtime.projector.position,
            )
        return outcome.state

    # Workflow commands -------------------------------------------------------------------------

    async def start(
        self,
        name: str,
        *,
        description: str | None = None,
        config: Mapping[str, Any] | None = None,
        auto_start: bool = True,
    ) -> Workflow:
        """Start a workflow; with `auto_start` it runs by itself, else one `next` per step."""
        runtime = self._running()
        command = StartWorkflow(
            workflow_id=0,
            name=checked_name(name),
            description=checked_description(description),
            config=stored_config(config, self.settings.max_config_bytes),
            auto_start=auto_start,
        )
        workflow: Workflow = await self._settled(runtime, await runtime.coordinator.start(command))
        return workflow

    async def create(
        self,
        name: str,
        *,
        description: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> Workflow:
        """Create a workflow that waits in INIT until `launch`."""
        runtime = self._running()
        command = CreateWorkflow(
            workflow_id=0,
            name=checked_name(name),
            description=checked_description(description),
            config=stored_config(config, self.settings.max_config_bytes),
        )
        workflow: Workflow = await self._settled(runtime, await runtime.coordinator.create(command))
        return workflow

    async def launch(self, workflow_id: int) -> Workflow:
        """Start a created workflow; it then runs by itself."""
        runtime = self._running()
        outcome = await runtime.coordinator.launch(workflow_id)
        workflow: Workflow = await self._settled(runtime, outcome)
        return workflow

    async def update(
        self,
        workflow_id: int,
        *,
        name: str | msgspec.UnsetType = msgspec.UNSET,
        description: str | msgspec.UnsetType | None = msgspec.UNSET,
        config: Mapping[str, Any] | msgspec.UnsetType = msgspec.UNSET,
    ) -> Workflow:
        """Change name, description or config (refused mid-run); fields not given keep theirs."""
        runtime = self._running()
        command = EditWorkflow(
            name=name if isinstance(name, msgspec.UnsetType) else checked_name(name),
            description=(
                description
                if isinstance(description, msgspec.UnsetType)
                else checked_description(description)
            ),
            config=(
                config
                if isinstance(config, msgspec.UnsetType)
                else stored_config(config, self.settings.max_config_bytes)
            ),
        )
        outcome = await runtime.coordinator.edit(workflow_id, command)
        workflow: Workflow = await self._settled(runtime, outcome)
        return workflow

    async def next(self, workflow_id: int) -> Workflow:
        """Run the current state's task and return once its outcome and transition are recorded
        (a manual workflow's one step)."""
        runtime = self._running()
        outcome = await runtime.coordinator.advance(workflow_id)
        workflow: Workflow = await self._settled(runtime, outcome)
        return workflow

    async def retry(self, workflow_id: int) -> Workflow:
        """FAILED -> INIT with one more retry; an automatic workflow runs again."""
        runtime = self._running()
        outcome = await runtime.coordinator.retry(workflow_id)
        workflow: Workflow = await self._settled(runtime, outcome)
        return workflow

    async def cancel(self, workflow_id: int) -> Workflow:
        """Record CANCELLED now; a running task is told to stop and its result is discarded."""
        runtime = self._running()
        outcome = await runtime.coordinator.cancel(workflow_id)
        workflow: Workflow = await self._settled(runtime, outcome)
        return workflow

    async def delete(self, workflow_id: int) -> None:
        """Delete a finished (or never launched) workflow: gone from reads, kept in the log."""
        runtime = self._running()
        await self._settled(runtime, await runtime.coordinator.delete(workflow_id))

    # Workflow reads ----------------------------------------------------------------------------

    async def get(self, workflow_id: int, *, at_version: int | None = None) -> Workflow | None:
        """The workflow now (from the read model), or as it was after its `at_version`-th event
        (folded from its stream: time travel); None if it does not exist or was deleted."""
        runtime = self._running()
        checked_version(at_version)
        current = await runtime.projector.workflow(workflow_id)
        if current is None or current.deleted:
            return None
        if at_version is None:
            return current
        replayed = await replay(runtime.store, workflow_id, at_version)
        if len(replayed) < at_version:
            raise VersionNotFound(workflow_id, at_version, len(replayed))
        return replayed[-1].after

    async def list(
        self, *, status: State | str | None = None, skip: int = 0, limit: int = 100
    ) -> builtins.list[Workflow]:
        """Workflows in id order (deleted ones left out), optionally only those in `status`."""
        runtime = self._running()
        wanted = None if status is None else state_of(status).value
        skip, limit = page_of(skip, limit)
        query = ListQuery(kind=WORKFLOWS.kind, status=wanted, skip=skip, limit=limit)
        page: builtins.list[Workflow] = await runtime.projector.list_page(WORKFLOWS, query)
        return page

    async def events(self, workflow_id: int) -> builtins.list[ReplayedEvent]:
        """Every recorded event of the workflow, in version order: each as the log holds it
        (`recorded`: position, version, type, metadata, time), decoded (`event`), and the
        workflow right after it (`after`). A deleted workflow's history is there too, ending
        with WorkflowDeleted; WorkflowNotFound if the workflow never existed."""
        events = await replay(self._running().store, workflow_id)
        if not events:
            raise WorkflowNotFound(workflow_id)
        return events

    async def wait(
        self,
        workflow_id: int,
        timeout: float = 60.0,
        *,
        states: Iterable[State | str] = TERMINAL_STATES,
    ) -> Workflow:
        """The workflow once it is in one of `states` (by default COMPLETE, FAILED or CANCELLED,
        its last step recorded: COMPLETE's finalize result is in `task_results` by then).

        Wakes when the read models apply new events, never by polling. WaitTimeout (naming the
        workflow and where it is) after `timeout` seconds; WorkflowNotFound if it does not exist
        or is deleted meanwhile; LifecycleError if the Orchestrator stops meanwhile.
        """
        runtime = self._running()
        wanted = frozenset(state_of(state) for state in states)
        if not wanted:
            raise ValueError("states must name at least one state")
        names = [state.value for state in State if state in wanted]

        async def read() -> Workflow:
            workflow = await runtime.projector.workflow(workflow_id)
            if workflow is None or workflow.deleted:
                raise WorkflowNotFound(workflow_id)
            return workflow

        return await wait_until(
            runtime,
            read,
            lambda workflow: has_reached(workflow, wanted),
            timeout=checked_timeout(timeout),
            gave_up=lambda last: WaitTimeout("workflow", workflow_id, names, timeout, where(last)),
            what=f"workflow {workflow_id}",
        )

    # Standalone tasks --------------------------------------------------------------------------

    async def create_task(
        self,
        name: str,
        task_type: str,
        *,
        config: Mapping[str, Any] | None = None,
        workflow_id: int | None = None,
        description: str | None = None,
        max_retries: int = 0,
    ) -> Task:
        """Record a standalone task (`sleep`, `compute`, or `http_request` to a host in
        HTTP_TASK_ALLOWED_HOSTS) and run it in the task pool; retried while `retry_count <
        max_retries` (0 to 10)."""
        runtime = self._running()
        command = CreateTask(
            task_id=0,
            workflow_id=workflow_id,
            name=checked_name(name),
            task_type=task_type,
            description=checked_description(description),
            config=stored_config(config, self.settings.max_config_bytes),
            max_retries=checked_retries(max_retries),
        )
        task: Task = await self._settled(runtime, await runtime.tasks.create(command))
        return task

    async def get_task(self, task_id: int) -> Task | None:
        """A standalone task; None if it does not exist or was deleted."""
        task = await self._running().projector.task(task_id)
        return None if task is None or task.deleted else task

    async def list_tasks(
        self,
        *,
        workflow_id: int | None = None,
        status: TaskStatus | str | None = None,
        skip: int = 0,
        limit: int = 100,
    ) -> builtins.list[Task]:
        """Standalone tasks in id order, optionally of one workflow and in one status."""
        runtime = self._running()
        wanted = None if status is None else status_of(status).value
        skip, limit = page_of(skip, limit)
        query = ListQuery(
            kind=TASKS.kind, status=wanted, parent_id=workflow_id, skip=skip, limit=limit
        )
        page: builtins.list[Task] = await runtime.projector.list_page(TASKS, query)
        return page

    async def delete_task(self, task_id: int) -> None:
        """Cancel the task if it is pending or running (its late result is discarded) and
        delete it."""
        runtime = self._running()
        await self._settled(runtime, await runtime.tasks.delete(task_id))

    async def wait_task(
        self,
        task_id: int,
        timeout: float = 60.0,
        *,
        statuses: Iterable[TaskStatus | str] = TERMINAL_TASK_STATUSES,
    ) -> Task:
        """The task once it is in one of `statuses` (by default COMPLETED, FAILED or CANCELLED;
        a failed run that will be retried is PENDING, not FAILED). As `wait` otherwise."""
        runtime = self._running()
        wanted = frozenset(status_of(status) for status in statuses)
        if not wanted:
            raise ValueError("statuses must name at least one status")
        names = [status.value for status in TaskStatus if status in wanted]

        async def read() -> Task:
            task = await runtime.projector.task(task_id)
            if task is None or task.deleted:
                raise TaskNotFound(task_id)
            return task

        return await wait_until(
            runtime,
            read,
            lambda task: task.status in wanted,
            timeout=checked_timeout(timeout),
            gave_up=lambda last: WaitTimeout("task", task_id, names, timeout, last.status.value),
            what=f"task {task_id}",
        )

    # Service -----------------------------------------------------------------------------------

    async def stats(self) -> Stats:
        """Counts by state and the worker pools' figures, as of every command returned so far."""
        return stats_of(self._running())
