"""GET /metrics: the numbers a Prometheus server scrapes, in its text format.

Counters and histograms are fed as things happen (appends through the command services'
observers, requests through the dispatcher); gauges (workflows by state, pools, the log's head
and how far the read models lag it) are read from the runtime at each scrape. Each app has its
own registry, so two apps in one process (tests, embedding) never mix their numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.domain.events import StepFailed, StepSucceeded, WorkflowTransitioned
from orchestrator.projections.models import TASKS, WORKFLOWS
from orchestrator.runtime import Runtime

#: Step durations from instant (user no-op tasks) to the default TASK_TIMEOUT.
_STEP_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0)


class Metrics:
    """One app's metrics."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.transitions = Counter(
            "orchestrator_transitions",
            "Workflow state transitions recorded by this process, by trigger",
            ["trigger"],
            registry=registry,
        )
        self.steps = Histogram(
            "orchestrator_step_duration_seconds",
            "How long steps ran, by state and outcome (succeeded, failed)",
            ["state", "outcome"],
            buckets=_STEP_BUCKETS,
            registry=registry,
        )
        self.appended = Counter(
            "orchestrator_events_appended",
            "Events this process appended to the log, by aggregate kind",
            ["kind"],
            registry=registry,
        )
        self.commits = Histogram(
            "orchestrator_append_batch_size",
            "Appends committed together in one transaction (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "orchestrator_append_commit_seconds",
            "How long one commit of appends took (with its fsync on SQLite)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        )
        self.requests = Counter(
            "orchestrator_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.workflows = Gauge(
            "orchestrator_workflows",
            "Workflows by state (deleted ones left out)",
            ["state"],
            registry=registry,
        )
        self.tasks = Gauge(
            "orchestrator_tasks",
            "Standalone tasks by status (deleted ones left out)",
            ["status"],
            registry=registry,
        )
        self.head = Gauge(
            "orchestrator_log_head_position", "The log's last position", registry=registry
        )
        self.projected = Gauge(
            "orchestrator_projection_position",
            "The last log position the read models applied",
            registry=registry,
        )
        self.lag = Gauge(
            "orchestrator_projection_lag_events",
            "Positions the read models are behind the log",
            registry=registry,
        )
        self.busy = Gauge(
            "orchestrator_worker_pool_busy",
            "Threads running a task, by pool",
            ["pool"],
            registry=registry,
        )
        self.queued = Gauge(
            "orchestrator_worker_pool_queued",
            "Steps or task runs waiting for a thread, by pool",
            ["pool"],
            registry=registry,
        )
        self.threads = Gauge(
            "orchestrator_worker_pool_threads", "Threads of each pool", ["pool"], registry=registry
        )
        self.leases = Gauge(
            "orchestrator_leases_held",
            "In-flight workflows and tasks this process drives under a lease (PostgreSQL with "
            "several processes; 0 where one process has the log)",
            registry=registry,
        )
        self.writer = Gauge(
            "orchestrator_projection_writer",
            "1 if this process applies the log to the read models, else 0 (a follower)",
            registry=registry,
        )
        #: The labelled children the observers use, looked up once each (`labels` costs a few
        #: microseconds, several times per append on the engine's hot path, and a fair share
        #: of a cached read's whole cost).
        self._children: dict[tuple[Any, tuple[object, ...]], Any] = {}
        runtime.service.observers.append(self.observe_workflow)
        runtime.store.commit_observers.append(self.observe_commit)
        runtime.tasks.service.observers.append(self.observe_task)

    def observe_workflow(self, workflow_id: int, events: Sequence[Any]) -> None:
        """Count an append to a workflow: its events, transitions and step durations."""
        self._child(self.appended, "workflow").inc(len(events))
        for event in events:
            if isinstance(event, WorkflowTransitioned):
                self._child(self.transitions, event.trigger.value).inc()
            elif isinstance(event, StepSucceeded):
                self._child(self.steps, event.state.value, "succeeded").observe(event.duration)
            elif isinstance(event, StepFailed):
                self._child(self.steps, event.state.value, "failed").observe(event.duration)

    def observe_task(self, task_id: int, events: Sequence[Any]) -> None:
        """Count an append to a standalone task."""
        self._child(self.appended, "task").inc(len(events))

    def _child(self, metric: Any, *labels: object) -> Any:
        """`metric.labels(*labels)` (as text), looked up once (the label values are a few fixed
        names: kinds, triggers, states, methods, route templates, statuses)."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*map(str, labels))
        return child

    def observe_commit(self, appends: int, seconds: float) -> None:
        """Count one commit of appends."""
        self.commits.observe(appends)
        self.commit_seconds.observe(seconds)

    def observe_request(self, method: str, route: str, status: int) -> None:
        """Count one answered request."""
        self._child(self.requests, method, route, status).inc()

    async def render(self) -> bytes:
        """The text format, with the gauges read now."""
        runtime = self.runtime
        projector = runtime.projector
        for state, count in projector.counts(WORKFLOWS).items():
            self.workflows.labels(state).set(count)
        for status, count in projector.counts(TASKS).items():
            self.tasks.labels(status.lower()).set(count)
        head = await runtime.store.head_position()
        self.head.set(head)
        self.projected.set(projector.position)
        self.lag.set(max(0, head - projector.position))
        self.leases.set(runtime.ownership.held())
        self.writer.set(1 if projector.writing else 0)
        for pool in (runtime.pool, runtime.task_pool):
            self.busy.labels(pool.name).set(pool.active_tasks)
            self.queued.labels(pool.name).set(pool.queue_size)
            self.threads.labels(pool.name).set(pool.max_workers)
        return generate_latest(self.registry)


def metrics_route(metrics: Metrics) -> Route:
    """GET /metrics (behind API_TOKEN like every route but /health and the docs)."""

    async def scrape(request: Request) -> Response:
        return Response(await metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", scrape, methods=["GET"])
