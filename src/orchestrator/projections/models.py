"""What the projector knows about each kind of aggregate it keeps a read model of.

A read model row is the folded aggregate itself (msgspec-encoded), plus the columns that lists,
recovery and stats need. Adding a kind of aggregate means adding one `ReadModel` here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from orchestrator.domain.events import WorkflowCreated, WorkflowStarted, decode_event
from orchestrator.domain.tasks import Task, TaskCreated, decode_task_event, evolve_task
from orchestrator.domain.workflow import Workflow, evolve


class Row(msgspec.Struct, frozen=True):
    """One read-model row as storage keeps it."""

    kind: str
    id: int
    status: str
    parent_id: int | None
    deleted: bool
    needs_engine: bool
    state: bytes


@dataclass(frozen=True)
class ReadModel:
    """How one kind of aggregate is folded, filed and decoded."""

    kind: str
    stream_prefix: str
    state_type: type[Any]
    decode_event: Callable[[bytes, int], Any]
    evolve: Callable[[Any, Any], Any]
    first_events: tuple[type[Any], ...]
    status: Callable[[Any], str]
    parent_id: Callable[[Any], int | None]
    needs_engine: Callable[[Any], bool]
    statuses: tuple[str, ...]

    def row(self, aggregate_id: int, state: Any) -> Row:
        """The row that files `state`."""
        return Row(
            kind=self.kind,
            id=aggregate_id,
            status=self.status(state),
            parent_id=self.parent_id(state),
            deleted=bool(state.deleted),
            needs_engine=self.needs_engine(state),
            state=_encoder.encode(state),
        )

    def decode_state(self, data: bytes) -> Any:
        """A stored row's aggregate."""
        return msgspec.json.decode(data, type=self.state_type)


_encoder = msgspec.json.Encoder()


def workflow_needs_engine(workflow: Workflow) -> bool:
    """True when the engine must pick the workflow up after a restart."""
    if workflow.deleted:
        return False
    return workflow.step is not None or (
        workflow.needs_step() and workflow.is_driven_automatically()
    )


WORKFLOWS = ReadModel(
    kind="workflow",
    stream_prefix="workflow-",
    state_type=Workflow,
    decode_event=decode_event,
    evolve=evolve,
    first_events=(WorkflowStarted, WorkflowCreated),
    status=lambda w: w.state.value,
    parent_id=lambda w: None,
    needs_engine=workflow_needs_engine,
    statuses=("INIT", "PREPARE", "EXECUTE", "VALIDATE", "COMPLETE", "FAILED", "CANCELLED"),
)

TASKS = ReadModel(
    kind="task",
    stream_prefix="task-",
    state_type=Task,
    decode_event=decode_task_event,
    evolve=evolve_task,
    first_events=(TaskCreated,),
    status=lambda t: t.status.value,
    parent_id=lambda t: t.workflow_id,
    needs_engine=lambda t: t.needs_run(),
    statuses=("PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"),
)

READ_MODELS: tuple[ReadModel, ...] = (WORKFLOWS, TASKS)


def read_model_of(stream_id: str) -> tuple[ReadModel, int] | None:
    """The read model a stream belongs to and the aggregate's id, or None for other streams."""
    for model in READ_MODELS:
        if stream_id.startswith(model.stream_prefix):
            number = stream_id[len(model.stream_prefix) :]
            if number.isdigit():
                return model, int(number)
    return None
