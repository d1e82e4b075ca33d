"""A command's answer rebuilt from the log, for an Idempotency-Key whose answer was never saved.

That happens when the server died (or the handler failed) after the command's events and key
were committed together but before its answer was stored. The command is never run again:
its stream is folded up to the version the command left (the key's row says which), and the
handler's own answer function (answers.py) is applied to that state. `next` answers with the
state its step led to, recorded by a later append: the rebuild reads on until that transition
is in the log, waiting for the step that a restart resumed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from orchestrator.domain.errors import WorkflowNotFound
from orchestrator.domain.events import WorkflowDeleted, WorkflowTransitioned
from orchestrator.domain.states import Trigger
from orchestrator.domain.transitions import FORWARD_TRIGGER
from orchestrator.domain.workflow import Workflow
from orchestrator.engine.coordinator import step_discarded
from orchestrator.engine.service import AggregateService
from orchestrator.eventstore.keys import IdempotencyRecord
from orchestrator.http import answers
from orchestrator.http.errors import RequestInProgress
from orchestrator.runtime import Runtime

_W = "/workflow/{workflow_id}"
_WS = "/workflows/{workflow_id}"
_X = "/execution/workflows/{workflow_id}"


@dataclass(frozen=True)
class Reply:
    """How one command endpoint's success answer follows from the state it left."""

    answer: Callable[[Any], Response]
    #: True for `next`: the answer is the state its step led to, not the state it left.
    after_step: bool = False


#: Every command endpoint of endpoint_table.py, by (method, path); a test keeps the two in step.
REPLIES: dict[tuple[str, str], Reply] = {
    ("POST", "/workflow/start"): Reply(answers.started),
    ("DELETE", _W): Reply(answers.deleted),
    ("POST", f"{_W}/next"): Reply(answers.advanced, after_step=True),
    ("POST", f"{_W}/retry"): Reply(answers.retried),
    ("POST", f"{_W}/cancel"): Reply(answers.cancelled),
    ("POST", "/workflows"): Reply(answers.created),
    ("PUT", _WS): Reply(answers.edited),
    ("DELETE", _WS): Reply(answers.deleted),
    ("POST", "/tasks"): Reply(answers.task_created),
    ("DELETE", "/tasks/{task_id}"): Reply(answers.deleted),
    ("POST", f"{_X}/start"): Reply(answers.launched),
    ("POST", f"{_X}/cancel"): Reply(answers.cancelled),
}


async def rebuild(
    runtime: Runtime, method: str, path: str, record: IdempotencyRecord, *, wait: float
) -> Response:
    """The answer of the command `record` points at; `next` waits up to `wait` s for its step.

    Raises what the handler would have raised when the command's outcome was a refusal
    (a `next` whose step result was discarded), and RequestInProgress if the step is not done
    in time.
    """
    reply = REPLIES.get((method, path))
    if reply is None:
        raise LookupError(f"no rebuilt answer is defined for {method} {path}")
    service = _service_of(runtime, record.stream_id)
    stream = await runtime.store.read_stream(record.stream_id, record.version)
    state: Any = service.kind.aggregate.fold_recorded(stream)
    if reply.after_step:
        state = await _after_step(runtime, service, record, state, wait)
    return reply.answer(state)


def _service_of(runtime: Runtime, stream_id: str) -> AggregateService[Any, Any, Any]:
    services: tuple[AggregateService[Any, Any, Any], ...] = (runtime.service, runtime.tasks.service)
    for service in services:
        if stream_id.startswith(service.kind.aggregate.stream_prefix):
            return service
    raise LookupError(f"no service keeps the stream {stream_id!r}")


async def _after_step(
    runtime: Runtime,
    service: AggregateService[Any, Any, Any],
    record: IdempotencyRecord,
    begun: Workflow,
    wait: float,
) -> Workflow:
    """The workflow right after the transition out of the step `next` began (at the record)."""
    step = begun.step
    if step is None:
        return begun
    outcomes = (FORWARD_TRIGGER.get(step), Trigger.FAIL)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    state: Workflow = begun
    seen = record.version
    while True:
        head = await runtime.store.head_position()
        for recorded in (await runtime.store.read_stream(record.stream_id))[seen:]:
            event = service.kind.decode(recorded.data, recorded.schema_version)
            state, seen = service.kind.evolve(state, event), recorded.version
            if isinstance(event, WorkflowDeleted):
                raise WorkflowNotFound(state.workflow_id)
            if isinstance(event, WorkflowTransitioned) and event.from_state is step:
                if event.trigger in outcomes:
                    return state
                raise step_discarded(state)  # cancelled while the step ran
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise RequestInProgress(
                f"a request with this key is in progress: workflow {state.workflow_id}'s "
                f"{step.value} step has not finished; try again later"
            )
        await runtime.store.wait_for_events(head, min(remaining, 1.0))
