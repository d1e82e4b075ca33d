"""Workflow handlers: the original routes (/workflow/...), CRUD (/workflows/...) and execution.

Each handler gets its decoded body and query (see dispatch.py), runs a command or reads a
projection, and encodes the answer (with the helpers of responses.py). Handlers raise errors;
http/errors.py turns them into bodies.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from orchestrator.domain.commands import CreateWorkflow, EditWorkflow, StartWorkflow
from orchestrator.domain.workflow import Workflow
from orchestrator.http import answers
from orchestrator.http.bounds import bounded_list, list_response, next_page
from orchestrator.http.conversions import (
    execution_status,
    task_out,
    transitions_out,
    workflow_out,
)
from orchestrator.http.dispatch import path_id
from orchestrator.http.request_types import (
    CreateWorkflowRequest,
    ListOrder,
    StartWorkflowRequest,
    UpdateWorkflowRequest,
    WorkflowListQuery,
)
from orchestrator.http.responses import (
    existing_workflow,
    json_response,
    runtime_of,
    settled,
    workflow_response,
)
from orchestrator.projections.models import TASKS, WORKFLOWS
from orchestrator.projections.storage import ListQuery

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
    return answers.started(await settled(runtime, await runtime.coordinator.start(command)))


async def get_workflow(request: Request) -> Response:
    """GET /workflows/{id}."""
    return workflow_response(request, await existing_workflow(request))


async def next_step(request: Request) -> Response:
    """POST /workflow/{id}/next."""
    runtime = runtime_of(request)
    outcome = await runtime.coordinator.advance(path_id(request, "workflow_id"))
    workflow: Workflow = await settled(runtime, outcome)
    return answers.advanced(workflow)


async def retry_workflow(request: Request) -> Response:
    """POST /workflow/{id}/retry."""
    runtime = runtime_of(request)
    outcome = await runtime.coordinator.retry(path_id(request, "workflow_id"))
    return answers.retried(await settled(runtime, outcome))


async def cancel_workflow(request: Request) -> Response:
    """POST /workflow/{id}/cancel and POST /execution/workflows/{id}/cancel."""
    runtime = runtime_of(request)
    outcome = await runtime.coordinator.cancel(path_id(request, "workflow_id"))
    return answers.cancelled(await settled(runtime, outcome))


async def delete_workflow(request: Request) -> Response:
    """DELETE /workflow/{id} and /workflows/{id}: 204, and 404 everywhere afterwards."""
    runtime = runtime_of(request)
    await settled(runtime, await runtime.coordinator.delete(path_id(request, "workflow_id")))
    return answers.deleted(None)


# CRUD -------------------------------------------------------------------------------------------


async def create_workflow(request: Request, body: CreateWorkflowRequest) -> Response:
    """POST /workflows: created in INIT, not started."""
    runtime = runtime_of(request)
    command = CreateWorkflow(
        workflow_id=0, name=body.name, description=body.description, config=body.config or {}
    )
    return answers.created(await settled(runtime, await runtime.coordinator.create(command)))


async def list_workflows(request: Request, query: WorkflowListQuery) -> Response:
    """GET /workflows: from the read model, in id order (newest first with `order=desc`),
    optionally only names containing `name`."""
    status = query.status_filter.value if query.status_filter else None
    wanted = ListQuery(
        kind=WORKFLOWS.kind,
        status=status,
        name=query.name or None,
        skip=query.skip,
        limit=query.limit,
        descending=query.order is ListOrder.DESC,
    )
    page = await bounded_list(request, WORKFLOWS, wanted, workflow_out)
    return list_response(page, next_page(request, skip=query.skip + len(page.items)))


async def update_workflow(request: Request, body: UpdateWorkflowRequest) -> Response:
    """PUT /workflows/{id}: an event; refused mid-run."""
    runtime = runtime_of(request)
    command = EditWorkflow(
        name=body.name,
        description=body.description,
        config=body.config if body.config is not None else {},
    )
    outcome = await runtime.coordinator.edit(path_id(request, "workflow_id"), command)
    return answers.edited(await settled(runtime, outcome))


async def workflow_tasks(request: Request) -> Response:
    """GET /workflows/{id}/tasks: the standalone tasks attached to the workflow."""
    workflow = await existing_workflow(request)
    wanted = ListQuery(kind=TASKS.kind, parent_id=workflow.workflow_id, limit=1000)
    page = await bounded_list(request, TASKS, wanted, task_out)
    rest = f"/tasks?workflow_id={workflow.workflow_id}&skip={len(page.items)}"
    return list_response(page, rest)


async def workflow_transitions(request: Request) -> Response:
    """GET /workflows/{id}/transitions."""
    return json_response(transitions_out(await existing_workflow(request)))


# Execution --------------------------------------------------------------------------------------


async def execution_start(request: Request) -> Response:
    """POST /execution/workflows/{id}/start: launch a created workflow."""
    runtime = runtime_of(request)
    outcome = await runtime.coordinator.launch(path_id(request, "workflow_id"))
    return answers.launched(await settled(runtime, outcome))


async def execution_status_route(request: Request) -> Response:
    """GET /execution/workflows/{id}/status."""
    return json_response(execution_status(await existing_workflow(request)))
