"""The one factory that wires the service together; used by the CLI, the app and the tests.

Nothing here connects or starts threads until `start()` is awaited.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from orchestrator.engine.coordinator import Coordinator
from orchestrator.engine.executor import WorkerPool
from orchestrator.engine.http_task import HTTP_REQUEST, HttpTaskPolicy
from orchestrator.engine.service import TASK_KIND, WORKFLOW_KIND, TaskService, WorkflowService
from orchestrator.engine.task_runner import TaskRunner
from orchestrator.engine.task_types import TaskTypes
from orchestrator.engine.tasks import TaskRegistry
from orchestrator.eventstore.base import EventStore
from orchestrator.eventstore.memory import InMemoryEventStore
from orchestrator.eventstore.sqlite import SQLiteEventStore, sqlite_path
from orchestrator.projections.models import TASKS, WORKFLOWS
from orchestrator.projections.projector import Projector
from orchestrator.projections.sqlite import SQLiteProjectionStorage
from orchestrator.projections.storage import InMemoryProjectionStorage, ProjectionStorage
from orchestrator.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The running parts of one server process."""

    settings: Settings
    store: EventStore
    projections: ProjectionStorage
    projector: Projector
    pool: WorkerPool
    service: WorkflowService
    coordinator: Coordinator
    tasks: TaskRunner
    #: Set when the server stops, so open event streams end.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        """Open storage, catch the read models up, and resume everything that was in flight.

        If any of it fails, what was opened is closed again (its threads would otherwise keep
        the process alive), and the error is raised.
        """
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        await self.store.open()
        await self.projections.open()
        await self.projector.start()
        self.service.reserve_ids_after(await self.projector.max_id(WORKFLOWS))
        self.tasks.service.reserve_ids_after(await self.projector.max_id(TASKS))
        workflows = await self.projector.ids_needing_engine(WORKFLOWS)
        tasks = await self.projector.ids_needing_engine(TASKS)
        self.coordinator.resume(workflows)
        self.tasks.resume(tasks)
        log.info(
            "log at position %d; resumed %d workflow(s) and %d task(s) that were in flight",
            self.projector.position,
            len(workflows),
            len(tasks),
        )

    async def stop(self) -> None:
        """Stop driving workflows and tasks, then the projector, then close storage.

        Steps and runs in flight stay recorded as started and run again on the next start.
        """
        self.stopping.set()
        await self.coordinator.stop()
        await self.tasks.stop()
        self.pool.shutdown()
        await self.projector.stop()
        await self.projections.close()
        await self.store.close()


def build_runtime(settings: Settings, registry: TaskRegistry | None = None) -> Runtime:
    """Wire a runtime for `settings.database_url` (sqlite:///file or memory://)."""
    store: EventStore
    projections: ProjectionStorage
    if settings.database_url == "memory://":
        store = InMemoryEventStore()
        projections = InMemoryProjectionStorage()
    else:
        sqlite_store = SQLiteEventStore(sqlite_path(settings.database_url))
        store = sqlite_store
        projections = SQLiteProjectionStorage(sqlite_store)
    pool = WorkerPool(settings.max_workers)
    service = WorkflowService(WORKFLOW_KIND, store)
    coordinator = Coordinator(
        service,
        pool,
        registry or TaskRegistry(),
        task_timeout=settings.task_timeout,
        time_scale=settings.task_time_scale,
    )
    http_policy = HttpTaskPolicy(
        allowed_hosts=frozenset(settings.http_task_allowed_hosts),
        max_response_bytes=settings.http_task_max_response_bytes,
        max_timeout=settings.http_task_max_timeout,
    )
    runner = TaskRunner(
        TaskService(TASK_KIND, store),
        service,
        pool,
        task_timeout=settings.task_timeout,
        types=TaskTypes({HTTP_REQUEST: http_policy.prepare}),
    )
    return Runtime(
        settings=settings,
        store=store,
        projections=projections,
        projector=Projector(store, projections),
        pool=pool,
        service=service,
        coordinator=coordinator,
        tasks=runner,
    )
