"""The one factory that wires the service together; used by the CLI, the app and the tests.

Nothing here connects or starts threads until `start()` is awaited.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from orchestrator.backend import Backend, make_backend
from orchestrator.engine.coordinator import Coordinator
from orchestrator.engine.executor import WorkerPool
from orchestrator.engine.http_task import HTTP_REQUEST, HttpTaskPolicy
from orchestrator.engine.ownership import Ownership, step_task_key, task_type_key
from orchestrator.engine.service import TASK_KIND, WORKFLOW_KIND, TaskService, WorkflowService
from orchestrator.engine.task_loading import load_task_modules
from orchestrator.engine.task_runner import TaskRunner
from orchestrator.engine.task_types import TaskTypes
from orchestrator.engine.tasks import TaskRegistry
from orchestrator.eventstore.anchoring import Anchorer
from orchestrator.eventstore.base import EventStore
from orchestrator.projections.models import TASKS, WORKFLOWS
from orchestrator.projections.projector import Projector
from orchestrator.projections.storage import ProjectionStorage
from orchestrator.settings import Settings
from orchestrator.sized_cache import CacheBudget

log = logging.getLogger(__name__)

#: At a graceful stop, how long the read models may take to apply what the log already holds.
DRAIN_SECONDS = 5.0


@dataclass
class Runtime:
    """The running parts of one server process."""

    settings: Settings
    #: The database's storage, as the factory made it (the tools' way in, too).
    backend: Backend
    store: EventStore
    projections: ProjectionStorage
    projector: Projector
    pool: WorkerPool
    #: The standalone tasks' own threads (TASK_WORKERS), apart from the steps' `pool`.
    task_pool: WorkerPool
    service: WorkflowService
    coordinator: Coordinator
    tasks: TaskRunner
    #: Checkpoints the log's head every ANCHOR_INTERVAL_SECONDS and at stop.
    anchorer: Anchorer
    #: This process's leases on in-flight work, where processes share the log (PostgreSQL).
    ownership: Ownership
    #: Set when the server stops, so open event streams end.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    #: When (loop time) steps still running after SIGTERM stop being waited for.
    _grace_ends: float | None = field(default=None, init=False)

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
        await self.anchorer.start()
        await self.projections.open()
        await self.projector.start()
        self.service.reserve_ids_after(await self.projector.max_id(WORKFLOWS))
        self.tasks.service.reserve_ids_after(await self.projector.max_id(TASKS))
        workflows = await self.projector.ids_needing_engine(WORKFLOWS)
        tasks = await self.projector.ids_needing_engine(TASKS)
        self.ownership.watch(
            "workflow",
            in_flight=lambda: self.projector.ids_needing_engine(WORKFLOWS),
            drive=self.coordinator.drive,
            is_driving=self.coordinator.is_driving,
            lose=self.coordinator.lose,
        )
        self.ownership.watch(
            "task",
            in_flight=lambda: self.projector.ids_needing_engine(TASKS),
            drive=self.tasks.drive,
            is_driving=self.tasks.is_driving,
            lose=self.tasks.lose,
        )
        # Cancels recorded by other processes reach the tasks this one runs.
        self.projector.observers.append(self.coordinator.notice)
        self.projector.observers.append(self.tasks.notice)
        await self.ownership.start()
        # Where processes share the log, each driver first takes its lease: those another live
        # process drives are left to it.
        self.coordinator.resume(workflows)
        self.tasks.resume(tasks)
        log.info(
            "log at position %d; resumed %d workflow(s) and %d task(s) that were in flight",
            self.projector.position,
            len(workflows),
            len(tasks),
        )

    def begin_shutdown(self) -> None:
        """On SIGTERM: end event streams now and begin no new step; those running get
        SHUTDOWN_GRACE_SECONDS from now to finish and be recorded (`stop` waits for them).

        Without it (tests, a failed start) `stop` waits for nothing. Either way what is still
        running then stays recorded as started and runs again on the next start, exactly once.
        """
        if self._grace_ends is None:
            loop = asyncio.get_running_loop()
            self._grace_ends = loop.time() + self.settings.shutdown_grace_seconds
            # A `next` still waiting then answers 503 JSON, before uvicorn cancels it (its
            # timeout_graceful_shutdown is a second longer) with a plain-text 500.
            loop.call_at(self._grace_ends, self.coordinator.grace_over.set)
        self.stopping.set()
        self.ownership.stopping = True
        self.pool.drain()
        self.task_pool.drain()

    async def stop(self) -> None:
        """Stop driving workflows and tasks, let the projector apply what was appended (for up
        to DRAIN_SECONDS), checkpoint the head, then close storage.

        Steps and runs in flight stay recorded as started and run again on the next start.
        """
        self.stopping.set()
        grace = 0.0
        if self._grace_ends is not None:  # SIGTERM: what is running may finish until then
            grace = max(0.0, self._grace_ends - asyncio.get_running_loop().time())
        self.ownership.stopping = True
        await asyncio.gather(self.coordinator.stop(grace), self.tasks.stop(grace))
        self.pool.shutdown()
        self.task_pool.shutdown()
        await self.projector.stop(drain_seconds=DRAIN_SECONDS)
        # After the drivers, and after the read models hold their last steps (the other
        # processes find in-flight work there): hand what is unfinished over to them.
        await self.ownership.stop()
        await self.anchorer.stop()
        await self.projections.close()
        await self.store.close()


def build_runtime(settings: Settings, registry: TaskRegistry | None = None) -> Runtime:
    """Wire a runtime for `settings.database` (through `backend.make_backend`), running the
    tasks of `registry`, or else the built-ins and those of TASKS_MODULES (TaskLoadError if one
    of those cannot be loaded)."""
    if registry is None:
        registry = load_task_modules(settings.tasks_modules)
    backend = make_backend(settings.database)
    store = backend.store
    projections = backend.tables.storage()
    leadership = backend.leadership(projections) if backend.leadership is not None else None
    ownership = Ownership(backend.leases, ttl=settings.lease_seconds)
    pool = WorkerPool(settings.max_workers, "steps")
    task_pool = WorkerPool(settings.task_workers, "tasks")
    budget = CacheBudget(settings.cache_memory_mb)
    service = WorkflowService(WORKFLOW_KIND, store, cache_bytes=budget.workflows)
    coordinator = Coordinator(
        service,
        pool,
        registry,
        task_timeout=settings.task_timeout,
        time_scale=settings.task_time_scale,
        max_queued_steps=settings.max_queued_steps,
        ownership=ownership,
    )
    http_policy = HttpTaskPolicy(
        allowed_hosts=frozenset(settings.http_task_allowed_hosts),
        max_response_bytes=settings.http_task_max_response_bytes,
        max_timeout=settings.http_task_max_timeout,
    )
    runner = TaskRunner(
        TaskService(TASK_KIND, store, cache_bytes=budget.tasks),
        service,
        task_pool,
        task_timeout=settings.task_timeout,
        types=TaskTypes({HTTP_REQUEST: http_policy.prepare}),
        registry=registry,
        max_queued_runs=settings.max_queued_steps,
        ownership=ownership,
    )
    ownership.tasks = _runnable(registry, runner.type_names())
    return Runtime(
        settings=settings,
        backend=backend,
        store=store,
        projections=projections,
        projector=Projector(
            store, projections, cache_bytes=budget.read_models, leadership=leadership
        ),
        pool=pool,
        task_pool=task_pool,
        service=service,
        coordinator=coordinator,
        tasks=runner,
        anchorer=Anchorer(
            store,
            backend.anchors,
            key=settings.integrity_key,
            interval=settings.anchor_interval_seconds,
        ),
        ownership=ownership,
    )


def _runnable(registry: TaskRegistry, type_names: list[str]) -> list[str]:
    """What this process can run, as it registers it for the others: its step tasks and its
    task types (built-in and the user's)."""
    steps = [step_task_key(spec.name) for spec in registry.steps().values()]
    return [*steps, *(task_type_key(name) for name in type_names)]
