"""The success answer of each command, as a function of the state the command left.

The handlers answer with these, and so does a repeat of an Idempotency-Key whose answer was lost
(the server died after recording the command): it folds the stream up to the version the command
left and calls the same function (see replies.py), so the two answers cannot drift apart.
"""

from __future__ import annotations

from starlette.responses import Response

from orchestrator.domain.tasks import Task
from orchestrator.domain.workflow import Workflow
from orchestrator.http.conversions import task_out, workflow_out
from orchestrator.http.response_types import RetryResponse, StepResponse, WorkflowStartedResponse
from orchestrator.http.responses import json_response


def _step(workflow: Workflow, message: str) -> Response:
    state = workflow.state.value
    return json_response(
        StepResponse(
            message=message, workflow_id=workflow.workflow_id, current_state=state, status=state
        )
    )


def started(workflow: Workflow) -> Response:
    """POST /workflow/start: 201, the new workflow's id and state."""
    state = workflow.state.value
    answer = WorkflowStartedResponse(
        message="Workflow started",
        workflow_id=workflow.workflow_id,
        name=workflow.name,
        status=state,
        current_state=state,
    )
    return json_response(answer, 201)


def advanced(workflow: Workflow) -> Response:
    """POST /workflow/{id}/next: the state the step led to."""
    return _step(workflow, f"Workflow advanced to {workflow.state.value}")


def retried(workflow: Workflow) -> Response:
    """POST /workflow/{id}/retry."""
    return json_response(
        RetryResponse(
            message=f"Workflow retry {workflow.retries} started",
            workflow_id=workflow.workflow_id,
            retries=workflow.retries,
            current_state=workflow.state.value,
            status=workflow.state.value,
        )
    )


def cancelled(workflow: Workflow) -> Response:
    """POST /workflow/{id}/cancel and /execution/workflows/{id}/cancel."""
    return _step(workflow, "Workflow cancelled")


def launched(workflow: Workflow) -> Response:
    """POST /execution/workflows/{id}/start."""
    return _step(workflow, "Workflow execution started")


def created(workflow: Workflow) -> Response:
    """POST /workflows: 201, the whole workflow."""
    return json_response(workflow_out(workflow), 201)


def edited(workflow: Workflow) -> Response:
    """PUT /workflows/{id}: the whole workflow after the edit."""
    return json_response(workflow_out(workflow))


def task_created(task: Task) -> Response:
    """POST /tasks: 201, the whole task."""
    return json_response(task_out(task), 201)


def deleted(_: object) -> Response:
    """Every DELETE: 204, no body."""
    return Response(status_code=204)
