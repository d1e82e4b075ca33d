"""Standalone task handlers: /tasks."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from orchestrator.domain.errors import TaskNotFound
from orchestrator.domain.tasks import CreateTask, TaskStatus
from orchestrator.http import answers
from orchestrator.http.bounds import bounded_list, list_response, next_page
from orchestrator.http.conversions import task_out
from orchestrator.http.dispatch import path_id
from orchestrator.http.request_types import CreateTaskRequest, TaskListQuery
from orchestrator.http.responses import json_response, runtime_of, settled
from orchestrator.projections.models import TASKS
from orchestrator.projections.storage import ListQuery


async def create_task(request: Request, body: CreateTaskRequest) -> Response:
    """POST /tasks: record the task and run it in the worker pool."""
    runtime = runtime_of(request)
    if body.task_type not in runtime.tasks.type_names():
        # Worded as the body's decoding words a bad enum value, which this field was before
        # task modules could add types.
        raise msgspec.ValidationError(f"Invalid enum value {body.task_type!r} - at `$.task_type`")
    max_retries = body.max_retries
    if isinstance(max_retries, msgspec.UnsetType):
        max_retries = runtime.tasks.default_retries(body.task_type)
    command = CreateTask(
        task_id=0,
        workflow_id=body.workflow_id,
        name=body.name,
        task_type=body.task_type,
        description=body.description,
        config=body.config or {},
        max_retries=max_retries,
    )
    return answers.task_created(await settled(runtime, await runtime.tasks.create(command)))


async def list_tasks(request: Request, query: TaskListQuery) -> Response:
    """GET /tasks: filtered by workflow_id and status, in id order."""
    status = query.status or query.status_filter
    wanted = ListQuery(
        kind=TASKS.kind,
        # The read model files tasks under the domain's status names (PENDING, ...).
        status=TaskStatus[status.name].value if status else None,
        parent_id=query.workflow_id,
        skip=query.skip,
        limit=query.limit,
    )
    page = await bounded_list(request, TASKS, wanted, task_out)
    return list_response(page, next_page(request, skip=query.skip + len(page.items)))


async def get_task(request: Request) -> Response:
    """GET /tasks/{id}."""
    task_id = path_id(request, "task_id")
    task = await runtime_of(request).projector.task(task_id)
    if task is None or task.deleted:
        raise TaskNotFound(task_id)
    return json_response(task_out(task))


async def delete_task(request: Request) -> Response:
    """DELETE /tasks/{id}: cancels a pending or running task, then 404 afterwards."""
    runtime = runtime_of(request)
    await settled(runtime, await runtime.tasks.delete(path_id(request, "task_id")))
    return answers.deleted(None)
