"""What every route module shares to answer: JSON encoding, the runtime, read-your-writes.

The route modules (workflow_routes.py, task_routes.py, history_routes.py, service_routes.py)
import these rather than one another, so each holds only its own resource's handlers.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from orchestrator.domain.errors import WorkflowNotFound
from orchestrator.domain.workflow import Workflow
from orchestrator.engine.service import Outcome
from orchestrator.http.conversions import workflow_out
from orchestrator.http.dispatch import mark_read_model_lag, path_id
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


def runtime_of(source: HTTPConnection | Starlette) -> Runtime:
    """The runtime behind an app made by `create_app`, or behind the app serving a request."""
    app = source.app if isinstance(source, HTTPConnection) else source
    runtime: Runtime = app.state.runtime
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
    return encoded_workflow_response(request.app.state.encoded_reads, workflow)


def encoded_workflow_response(encoded: EncodedReads, workflow: Workflow) -> Response:
    """The workflow read as a JSON response, its body from `encoded` (fast_reads.py answers
    with this too, so both paths send the same bytes)."""
    return Response(encoded.body(workflow), media_type="application/json")
