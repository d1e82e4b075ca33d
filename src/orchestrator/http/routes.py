"""Route handlers: decode the request, run a command or read a projection, encode the answer."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from orchestrator import __version__
from orchestrator.domain.commands import StartWorkflow
from orchestrator.domain.errors import WorkflowNotFound
from orchestrator.domain.workflow import Workflow
from orchestrator.engine.service import Outcome
from orchestrator.http.errors import InvalidInput
from orchestrator.http.schemas import (
    ExecutionStats,
    Health,
    RetryResponse,
    StartWorkflowRequest,
    StepResponse,
    WorkerPoolStats,
    WorkflowStartedResponse,
    workflow_counts,
    workflow_out,
)
from orchestrator.runtime import Runtime

_encoder = msgspec.json.Encoder()
_start_decoder = msgspec.json.Decoder(StartWorkflowRequest)
_ID = re.compile(r"[1-9][0-9]{0,18}")
_MAX_ID = 2**63 - 1


def _json(body: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(body), status_code=status, media_type="application/json")


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def workflow_id_of(request: Request) -> int:
    """The `{workflow_id}` path parameter as a positive 64-bit integer, or a 422."""
    raw = request.path_params["workflow_id"]
    if not _ID.fullmatch(raw) or int(raw) > _MAX_ID:
        raise InvalidInput(f"workflow_id must be a positive integer below 2**63, got {raw[:40]!r}")
    return int(raw)


async def _settled(runtime: Runtime, outcome: Outcome) -> Workflow:
    # Read-your-writes: answer only once the read models include what the command appended.
    await runtime.projector.wait_for(outcome.position)
    return outcome.workflow


async def start_workflow(request: Request) -> Response:
    """POST /workflow/start."""
    runtime = _runtime(request)
    body = _start_decoder.decode(await request.body())
    command = StartWorkflow(
        workflow_id=0,
        name=body.name,
        description=body.description,
        config=body.config or {},
        auto_start=body.auto_start,
    )
    outcome = await runtime.coordinator.start(command)
    workflow = await _settled(runtime, outcome)
    answer = WorkflowStartedResponse(
        message="Workflow started",
        workflow_id=workflow.workflow_id,
        name=workflow.name,
        status=workflow.state.value,
        current_state=workflow.state.value,
    )
    return _json(answer, 201)


async def workflow_resource(request: Request) -> Response:
    """/workflow/{id}: one route for GET and DELETE, so a 405 lists both in its Allow header."""
    if request.method == "DELETE":
        return await delete_workflow(request)
    return await get_workflow(request)


async def get_workflow(request: Request) -> Response:
    """GET /workflow/{id}."""
    workflow_id = workflow_id_of(request)
    workflow = await _runtime(request).projector.workflow(workflow_id)
    if workflow is None or workflow.deleted:
        raise WorkflowNotFound(workflow_id)
    return _json(workflow_out(workflow))


async def next_step(request: Request) -> Response:
    """POST /workflow/{id}/next."""
    runtime = _runtime(request)
    workflow = await _settled(runtime, await runtime.coordinator.advance(workflow_id_of(request)))
    state = workflow.state.value
    return _json(
        StepResponse(
            message=f"Workflow advanced to {state}",
            workflow_id=workflow.workflow_id,
            current_state=state,
            status=state,
        )
    )


async def retry_workflow(request: Request) -> Response:
    """POST /workflow/{id}/retry."""
    runtime = _runtime(request)
    workflow = await _settled(runtime, await runtime.coordinator.retry(workflow_id_of(request)))
    return _json(
        RetryResponse(
            message=f"Workflow retry {workflow.retries} started",
            workflow_id=workflow.workflow_id,
            retries=workflow.retries,
            current_state=workflow.state.value,
            status=workflow.state.value,
        )
    )


async def cancel_workflow(request: Request) -> Response:
    """POST /workflow/{id}/cancel."""
    runtime = _runtime(request)
    workflow = await _settled(runtime, await runtime.coordinator.cancel(workflow_id_of(request)))
    return _json(
        StepResponse(
            message="Workflow cancelled",
            workflow_id=workflow.workflow_id,
            current_state=workflow.state.value,
            status=workflow.state.value,
        )
    )


async def delete_workflow(request: Request) -> Response:
    """DELETE /workflow/{id}: 204, and 404 everywhere afterwards."""
    runtime = _runtime(request)
    await _settled(runtime, await runtime.coordinator.delete(workflow_id_of(request)))
    return Response(status_code=204)


async def execution_stats(request: Request) -> Response:
    """GET /execution/stats: counters, not counts."""
    runtime = _runtime(request)
    pool = runtime.coordinator.pool
    return _json(
        ExecutionStats(
            worker_pool=WorkerPoolStats(
                max_workers=pool.max_workers,
                active_tasks=pool.active_tasks,
                queue_size=pool.queue_size,
            ),
            workflows=workflow_counts(runtime.projector.stats()),
        )
    )


async def health(request: Request) -> Response:
    """GET /health: 200 while the log can be read."""
    runtime = _runtime(request)
    head = await runtime.store.head_position()
    database = "memory" if runtime.settings.database_url == "memory://" else "sqlite"
    return _json(
        Health(
            status="healthy",
            version=__version__,
            database=database,
            log_position=head,
            projection_position=runtime.projector.position,
        )
    )
