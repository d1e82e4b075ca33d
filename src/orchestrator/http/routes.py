"""Workflow handlers: the original routes (/workflow/...), CRUD (/workflows/...) and execution.

Each handler gets its decoded body and query (see endpoints.py), runs a command or reads a
projection, and encodes the answer. Handlers raise errors; http/errors.py turns them into bodies.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from orchestrator.domain.commands import CreateWorkflow, EditWorkflow, StartWorkflow
from orchestrator.domain.errors import WorkflowNotFound
from orchestrator.domain.workflow import Workflow
from orchestrator.engine.service import Outcome
from orchestrator.http.endpoints import path_id
from orchestrator.http.schemas import (
    CreateWorkflowRequest,
    RetryResponse,
    StartWorkflowRequest,
    StepResponse,
    UpdateWorkflowRequest,
    WorkflowListQuery,
    WorkflowStartedResponse,
    execution_status,
    task_out,
    transitions_out,
    workflow_out,
)
from orchestrator.projections.models import TASKS, WORKFLOWS
from orchestrator.projections.storage import ListQuery
from orchestrator.runtime import Runtime

_encoder = msgspec.json.Encoder()


def json_response(body: Any, status: int = 200) -> Response:
    """`body` encoded by msgspec as a JSON response."""
    return Response(_encoder.encode(body), status_code=status, media_type="application/json")


def runtime_of(request: Request) -> Runtime:
    """The runtime behind the app serving `request`."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def settled(runtime: Runtime, outcome: Outcome) -> Any:
    """Read-your-writes: wait until the read models include what the command appended."""
    await runtime.projector.wait_for(outcome.position)
    return outcome.state


async def existing_workflow(request: Request) -> Workflow:
    """The `{workflow_id}` workflow's read model, or a 404."""
    workflow_id = path_id(request, "workflow_id")
    workflow = await runtime_of(request).projector.workflow(workflow_id)
    if workflow is None or workflow.deleted:
        raise WorkflowNotFound(workflow_id)
    return workflow


def _step_response(workflow: Workflow, message: str) -> Response:
    state = workflow.state.value
    return json_response(
        StepResponse(
            message=message, workflow_id=workflow.workflow_id, current_state=state, status=state
        )
    )


# The original routes ---------------------------------------------------------------------------


async def start_workflow(request: Request, body: StartWorkflowRequest) -> Response:
    """POST /workflow/start."""
    runtime = runtime_of(request)
    command = StartWorkflow(
        workflow_id=0,
        name=body.name,
        description=body.description,
        config=body.config or {},
        auto_start=body.auto_start,
    )
    workflow: Workflow = await settled(runtime, await runtime.coordinator.start(command))
    answer = WorkflowStartedResponse(
        message="Workflow started",
        workflow_id=workflow.workflow_id,
        name=workflow.name,
        status=workflow.state.value,
        current_state=workflow.state.value,
    )
    return json_response(answer, 201)


class EncodedReads:
    """Encoded reads of recent workflow versions, one cache per app.

    A version of a workflow never changes, so neither does its body: it is encoded once.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._bodies: OrderedDict[tuple[int, int], tuple[Workflow, bytes]] = OrderedDict()
        self._size = size

    def body(self, workflow: Workflow) -> bytes:
        """The JSON body of `workflow_out(workflow)`."""
        key = (workflow.workflow_id, workflow.version)
        cached = self._bodies.get(key)
        # The same object, not only the same version: a rebuild reloads new objects, and what
        # it repaired must not be served from an old encoding.
        if cached is not None and cached[0] is workflow:
            return cached[1]
        body = _encoder.encode(workflow_out(workflow))
        self._bodies[key] = (workflow, body)
        if len(self._bodies) > self._size:
            self._bodies.popitem(last=False)
        return body


def workflow_response(request: Request, workflow: Workflow) -> Response:
    """The workflow read as a JSON response."""
    encoded: EncodedReads = request.app.state.encoded_reads
    return Response(encoded.body(workflow), media_type="application/json")


async def get_workflow(request: Request) -> Response:
    """GET /workflows/{id}."""
    return workflow_response(request, await existing_workflow(request))


async def next_step(request: Request) -> Response:
    """POST /workflow/{id}/next."""
    runtime = runtime_of(request)
    outcome = await runtime.coordinator.advance(path_id(request, "workflow_id"))
    workflow: Workflow = await settled(runtime, outcome)
    return _step_response(workflow, f"Workflow advanced to {workflow.state.value}")


async def retry_workflow(request: Request) -> Response:
    """POST /workflow/{id}/retry."""
    runtime = runtime_of(request)
    outcome = await runtime.coordinator.retry(path_id(request, "workflow_id"))
    workflow: Workflow = await settled(runtime, outcome)
    return json_response(
        RetryResponse(
            message=f"Workflow retry {workflow.retries} started",
            workflow_id=workflow.workflow_id,
            retries=workflow.retries,
            current_state=workflow.state.value,
            status=workflow.state.value,
        )
    )


async def cancel_workflow(request: Request) -> Response:
    """POST /workflow/{id}/cancel and POST /execution/workflows/{id}/cancel."""
    runtime = runtime_of(request)
    outcome = await runtime.coordinator.cancel(path_id(request, "workflow_id"))
    return _step_response(await settled(runtime, outcome), "Workflow cancelled")


async def delete_workflow(request: Request) -> Response:
    """DELETE /workflow/{id} and /workflows/{id}: 204, and 404 everywhere afterwards."""
    runtime = runtime_of(request)
    await settled(runtime, await runtime.coordinator.delete(path_id(request, "workflow_id")))
    return Response(status_code=204)


# CRUD -------------------------------------------------------------------------------------------


async def create_workflow(request: Request, body: CreateWorkflowRequest) -> Response:
    """POST /workflows: created in INIT, not started."""
    runtime = runtime_of(request)
    command = CreateWorkflow(
        workflow_id=0, name=body.name, description=body.description, config=body.config or {}
    )
    workflow: Workflow = await settled(runtime, await runtime.coordinator.create(command))
    return json_response(workflow_out(workflow), 201)


async def list_workflows(request: Request, query: WorkflowListQuery) -> Response:
    """GET /workflows: from the read model, in id order."""
    status = query.status_filter.value if query.status_filter else None
    page = ListQuery(kind=WORKFLOWS.kind, status=status, skip=query.skip, limit=query.limit)
    workflows = await runtime_of(request).projector.list_page(WORKFLOWS, page)
    return json_response([workflow_out(w) for w in workflows])


async def update_workflow(request: Request, body: UpdateWorkflowRequest) -> Response:
    """PUT /workflows/{id}: an event; refused mid-run."""
    runtime = runtime_of(request)
    command = EditWorkflow(
        name=body.name,
        description=body.description,
        config=body.config if body.config is not None else {},
    )
    outcome = await runtime.coordinator.edit(path_id(request, "workflow_id"), command)
    return json_response(workflow_out(await settled(runtime, outcome)))


async def workflow_tasks(request: Request) -> Response:
    """GET /workflows/{id}/tasks: the standalone tasks attached to the workflow."""
    workflow = await existing_workflow(request)
    page = ListQuery(kind=TASKS.kind, parent_id=workflow.workflow_id, limit=1000)
    tasks = await runtime_of(request).projector.list_page(TASKS, page)
    return json_response([task_out(t) for t in tasks])


async def workflow_transitions(request: Request) -> Response:
    """GET /workflows/{id}/transitions."""
    return json_response(transitions_out(await existing_workflow(request)))


# Execution --------------------------------------------------------------------------------------


async def execution_start(request: Request) -> Response:
    """POST /execution/workflows/{id}/start: launch a created workflow."""
    runtime = runtime_of(request)
    outcome = await runtime.coordinator.launch(path_id(request, "workflow_id"))
    return _step_response(await settled(runtime, outcome), "Workflow execution started")


async def execution_status_route(request: Request) -> Response:
    """GET /execution/workflows/{id}/status."""
    return json_response(execution_status(await existing_workflow(request)))
