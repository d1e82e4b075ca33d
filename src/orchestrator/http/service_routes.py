"""Service handlers: /, /health, /execution/stats, /state-machine."""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import Request
from starlette.responses import Response

from orchestrator import __version__
from orchestrator.domain.states import FINAL_STATES, State, Trigger
from orchestrator.domain.transitions import FORWARD_TRIGGER, TRANSITIONS
from orchestrator.engine.executor import WorkerPool
from orchestrator.eventstore.errors import EventStoreError
from orchestrator.http.auth import principal_of
from orchestrator.http.conversions import workflow_counts
from orchestrator.http.response_types import (
    Cluster,
    ExecutionStats,
    Health,
    ProcessLeases,
    ServiceInfo,
    StateMachine,
    StepTaskRow,
    TransitionRow,
    WorkerPoolStats,
)
from orchestrator.http.responses import json_response, runtime_of
from orchestrator.runtime import Runtime

log = logging.getLogger(__name__)

#: The reason /health gives a caller without a token when API_TOKEN is set: the full one names
#: the database's path and the server's process, which a public route does not hand out.
UNDISCLOSED_REASON = "the database cannot be written; see the server log"


async def root(request: Request) -> Response:
    """GET /: name, version and where the docs are."""
    return json_response(
        ServiceInfo(
            message="Workflow Orchestrator API",
            name="Workflow Orchestrator",
            version=__version__,
            docs="/docs",
            openapi="/openapi.json",
            health="/health",
        )
    )


async def health(request: Request) -> Response:
    """GET /health: 200 `healthy` while the log can be read and written; 503 `degraded`, with
    the reason, while writes are refused or failing (database file deleted or replaced, full
    disk), so a load balancer or supervisor sees what every command would run into. With
    API_TOKEN set, only a caller with a token gets the full reason; the log always has it."""
    runtime = runtime_of(request)
    reason = await runtime.store.health_problem()
    if reason is not None:
        if getattr(request.app.state, "logged_health_problem", None) != reason:
            request.app.state.logged_health_problem = reason
            log.warning("degraded: %s", reason)
        if runtime.settings.api_tokens and not principal_of(request.scope):
            reason = UNDISCLOSED_REASON
    head = await runtime.store.head_position()
    database = runtime.settings.database.backend
    disclose = not runtime.settings.api_tokens or bool(principal_of(request.scope))
    return json_response(
        Health(
            status="healthy" if reason is None else "degraded",
            version=__version__,
            database=database,
            log_position=head,
            projection_position=runtime.projector.position,
            projection_lag=max(0, head - runtime.projector.position),
            cluster=await _cluster(runtime, disclose=disclose),
            reason=reason,
        ),
        200 if reason is None else 503,
    )


async def _cluster(runtime: Runtime, *, disclose: bool) -> Cluster | None:
    """This process's share of a log that processes share; None where the log is its alone."""
    ownership = runtime.ownership
    if not ownership.shared:
        return None
    cluster = Cluster(
        process=ownership.holder,
        projection_writer=runtime.projector.writing,
        leases_held=ownership.held(),
    )
    try:
        async with asyncio.timeout(2.0):
            processes = await ownership.processes()
    except (EventStoreError, TimeoutError):  # the reason above says why; health still answers
        return cluster
    cluster.processes = len(processes)
    if disclose:
        cluster.lease_holders = [
            ProcessLeases(
                process=p.holder, leases=p.leases, seen_seconds_ago=round(p.seen_seconds_ago, 3)
            )
            for p in processes
        ]
    return cluster


async def execution_stats(request: Request) -> Response:
    """GET /execution/stats: counters, not counts."""
    runtime = runtime_of(request)
    return json_response(
        ExecutionStats(
            worker_pool=_pool_stats(runtime.pool),
            workflows=workflow_counts(runtime.projector.stats()),
            task_pool=_pool_stats(runtime.task_pool),
        )
    )


def _pool_stats(pool: WorkerPool) -> WorkerPoolStats:
    return WorkerPoolStats(
        max_workers=pool.max_workers, active_tasks=pool.active_tasks, queue_size=pool.queue_size
    )


async def state_machine(request: Request) -> Response:
    """GET /state-machine: states, triggers and the transition table, from the table itself."""
    runtime = runtime_of(request)
    registry = runtime.coordinator.registry
    specs = registry.steps()
    tasks = {state.value: spec.name for state, spec in specs.items()}
    steps = [
        StepTaskRow(
            state=state.value,
            task=spec.name,
            source=spec.source,
            timeout=spec.timeout or runtime.settings.task_timeout,
            retries=spec.retries,
            is_async=spec.is_async,
        )
        for state, spec in specs.items()
    ]
    return json_response(
        StateMachine(
            states=[state.value for state in State],
            triggers=[trigger.value for trigger in Trigger],
            initial_state=State.INIT.value,
            final_states=[state.value for state in State if state in FINAL_STATES],
            forward_triggers={s.value: t.value for s, t in FORWARD_TRIGGER.items()},
            tasks=tasks,
            transitions=[
                TransitionRow(from_state=source.value, trigger=trigger.value, to_state=to.value)
                for (source, trigger), to in TRANSITIONS.items()
            ],
            steps=steps,
            task_types=runtime.tasks.type_names(),
        )
    )
