"""Workflow handlers: the original routes (/workflow/...), CRUD (/workflows/...) and execution.

Each handler gets its decoded body and query (see endpoints.py), runs a command or reads a
projection, and encodes the answer. Handlers raise errors; http/errors.py turns them into bodies.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from orchestrator.domain.commands import CreateWorkflow, EditWorkflow, StartWorkflow
from orchestrator.domain.errors import WorkflowNotFound
from orchestrator.domain.workflow import Workflow
from orchestrator.engine.service import Outcome
from orchestrator.http import answers
from orchestrator.http.bounds import bounded_list, list_response, next_page
from orchestrator.http.endpoints import mark_read_model_lag, path_id
from orchestrator.http.schemas import (
    CreateWorkflowRequest,
    StartWorkflowRequest,
    UpdateWorkflowRequest,
    WorkflowListQuery,
    execution_status,
    task_out,
    transitions_out,
    workflow_out,
)
from orchestrator.projections.models import TASKS, WORKFLOWS
from orchestrator.projections.storage import ListQuery
from orchestrator.runtime import Runtime
from orchestrator.sized_cache import SizedCache

_encoder = msgspec.json.Encoder()
log = logging.getLogger(__name__)
#: How long a command waits for the read models to include its events before it answers anyway.
#: Below the 5 s default timeout of common HTTP clients (httpx), so a lagging answer still
#: reaches them instead of a timeout they would retry.
SETTLE_SECONDS = 3.0


def json_response(body: Any, status: int = 200) -> Response:
    """`body` encoded by msgspec as a JSON response."""
    return Response(_encoder.encode(body), status_code=status, media_type="application/json")


def runtime_of(request: Request) -> Runtime:
    """The runtime behind the app serving `request`."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def settled(runtime: Runtime, outcome: Outcome) -> Any:
    """Read-your-writes: wait until the read models include what the command appended.

    The command is recorded whatever happens here, so read models that do not catch up in time
    (a full disk, a failing projection) must not turn its answer into an error that a client
    would retry, recording it twice: the answer is built from the command's own outcome, with
    its usual status, and marked with X-Read-Model-Lag (reads may not show it yet).
    """
    try:
        await runtime.projector.wait_for(outcome.position, SETTLE_SECONDS)
    except TimeoutError:
        log.warning(
            "the read models did not reach position %d in %g s (they are at %d); answering "
            "from the recorded outcome",
            outcome.position,
            SETTLE_SECONDS,
            runtime.projector.position,
        )
        mark_read_model_lag()
    return outcome.state


async def existing_workflow(request: Request) -> Workflow:
    """The `{workflow_id}` workflow's read model, or a 404."""
    workflow_id = path_id(request, "workflow_id")
    workflow = await runtime_of(request).projector.workflow(workflow_id)
    if workflow is None or workflow.deleted:
        raise WorkflowNotFound(workflow_id)
    return workflow


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


class EncodedReads:
    """Encoded reads of recent workflow versions, one cache per app.

    A version of a workflow never changes, so neither does its body: it is encoded once.
    """

    def __init__(self, size: int = 10_000, max_bytes: int = 24 * 1024 * 1024) -> None:
        # Bounded in bytes too: ten thousand bodies with 64 KB configs would be 640 MB.
        self._bodies: SizedCache[tuple[int, int], tuple[Workflow, bytes]] = SizedCache(
            size, max_bytes
        )

    def body(self, workflow: Workflow) -> bytes:
        """The JSON body of `workflow_out(workflow)`."""
        key = (workflow.workflow_id, workflow.version)
        cached = self._bodies.get(key)
        # The same object, not only the same version: a rebuild reloads new objects, and what
        # it repaired must not be served from an old encoding.
        if cached is not None and cached[0] is workflow:
            return cached[1]
        body = _encoder.encode(workflow_out(workflow))
        self._bodies.put(key, (workflow, body), len(body))
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
    """GET /workflows: from the read model, in id order."""
    status = query.status_filter.value if query.status_filter else None
    wanted = ListQuery(kind=WORKFLOWS.kind, status=status, skip=query.skip, limit=query.limit)
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
