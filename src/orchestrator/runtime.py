"""The one factory that wires the service together; used by the CLI, the app and the tests.

Nothing here connects or starts threads until `start()` is awaited.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.engine.coordinator import Coordinator
from orchestrator.engine.executor import WorkerPool
from orchestrator.engine.service import WORKFLOW_KIND, WorkflowService
from orchestrator.engine.tasks import TaskRegistry
from orchestrator.eventstore.base import EventStore
from orchestrator.eventstore.memory import InMemoryEventStore
from orchestrator.eventstore.sqlite import SQLiteEventStore, sqlite_path
from orchestrator.projections.models import WORKFLOWS
from orchestrator.projections.projector import Projector
from orchestrator.projections.sqlite import SQLiteProjectionStorage
from orchestrator.projections.storage import InMemoryProjectionStorage, ProjectionStorage
from orchestrator.settings import Settings


@dataclass
class Runtime:
    """The running parts of one server process."""

    settings: Settings
    store: EventStore
    projections: ProjectionStorage
    projector: Projector
    service: WorkflowService
    coordinator: Coordinator

    async def start(self) -> None:
        """Open storage, catch the read models up, and resume every workflow in flight."""
        await self.store.open()
        await self.projections.open()
        await self.projector.start()
        self.service.reserve_ids_after(await self.projector.max_id(WORKFLOWS))
        self.coordinator.resume(await self.projector.ids_needing_engine(WORKFLOWS))

    async def stop(self) -> None:
        """Stop driving workflows, then the projector, then close storage."""
        await self.coordinator.stop()
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
        path = sqlite_path(settings.database_url)
        sqlite_store = SQLiteEventStore(path)
        store = sqlite_store
        projections = SQLiteProjectionStorage(sqlite_store)
    service = WorkflowService(WORKFLOW_KIND, store)
    coordinator = Coordinator(
        service,
        WorkerPool(settings.max_workers),
        registry or TaskRegistry(),
        task_timeout=settings.task_timeout,
        time_scale=settings.task_time_scale,
    )
    return Runtime(
        settings=settings,
        store=store,
        projections=projections,
        projector=Projector(store, projections),
        service=service,
        coordinator=coordinator,
    )
