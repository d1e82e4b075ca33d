"""The registry of aggregate kinds: the one place that says what a workflow and a task are.

Each `AggregateType` names its kind, its log streams ("workflow-7", "task-3"), how a stored
payload decodes into an event (upcast from older schemas), how an event evolves the state, and
the status names its read model counts. The engine, the projector and the history tools build
on these instead of spelling the kinds again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from orchestrator.domain import tasks as task_domain
from orchestrator.domain import workflow as workflow_domain
from orchestrator.domain.events import Event, WorkflowCreated, WorkflowStarted, decode_event
from orchestrator.domain.states import State

S = TypeVar("S")
E = TypeVar("E")


class Stored(Protocol):
    """An event as the log keeps it: its payload and the schema it was written in."""

    @property
    def data(self) -> bytes:
        """The payload as stored."""

    @property
    def schema_version(self) -> int:
        """The schema the payload was written in."""


@dataclass(frozen=True)
class AggregateType(Generic[S, E]):
    """One kind of aggregate: its streams, its events and how they fold into its state."""

    #: The kind's name ("workflow", "task").
    name: str
    #: What every stream of this kind begins with ("workflow-"): the id follows.
    stream_prefix: str
    state_type: type[S]
    #: A stored payload as an event, upcast from the schema it was written in.
    decode: Callable[[bytes, int], E]
    #: The state after one event (the first event's state from None).
    evolve: Callable[[S | None, E], S]
    #: The events a stream of this kind may begin with.
    first_events: tuple[type[Any], ...]
    #: Every status an aggregate of this kind can be in, in lifecycle order.
    statuses: tuple[str, ...]

    def stream_id(self, aggregate_id: int) -> str:
        """The log stream that holds one aggregate's events."""
        return f"{self.stream_prefix}{aggregate_id}"

    def parse_stream(self, stream_id: str) -> int | None:
        """The aggregate id of one of this kind's streams; None for any other stream."""
        if not stream_id.startswith(self.stream_prefix):
            return None
        number = stream_id[len(self.stream_prefix) :]
        return int(number) if number.isascii() and number.isdigit() else None

    def states(self, events: Iterable[E], state: S | None = None) -> Iterator[S]:
        """The state after each of `events` in turn, starting from `state`."""
        for event in events:
            state = self.evolve(state, event)
            yield state

    def fold(self, events: Iterable[E], state: S | None = None) -> S | None:
        """The state after all of `events` (from `state`); None for no events and no state."""
        for event in events:
            state = self.evolve(state, event)
        return state

    def decode_all(self, stored: Iterable[Stored]) -> list[E]:
        """Stored events decoded, in order."""
        return [self.decode(item.data, item.schema_version) for item in stored]

    def fold_recorded(self, stored: Iterable[Stored]) -> S | None:
        """The state folded from a stream as the log keeps it; None for an empty one."""
        return self.fold(self.decode(item.data, item.schema_version) for item in stored)


WORKFLOW: AggregateType[workflow_domain.Workflow, Event] = AggregateType(
    name="workflow",
    stream_prefix="workflow-",
    state_type=workflow_domain.Workflow,
    decode=decode_event,
    evolve=workflow_domain.evolve,
    first_events=(WorkflowStarted, WorkflowCreated),
    statuses=tuple(state.value for state in State),
)

TASK: AggregateType[task_domain.Task, task_domain.TaskEvent] = AggregateType(
    name="task",
    stream_prefix="task-",
    state_type=task_domain.Task,
    decode=task_domain.decode_task_event,
    evolve=task_domain.evolve_task,
    first_events=(task_domain.TaskCreated,),
    statuses=tuple(status.value for status in task_domain.TaskStatus),
)

#: Every kind of aggregate the log holds.
KINDS: tuple[AggregateType[Any, Any], ...] = (WORKFLOW, TASK)


def kind_of_stream(stream_id: str) -> tuple[AggregateType[Any, Any], int] | None:
    """The kind a stream belongs to and the aggregate's id, or None for other streams."""
    for kind in KINDS:
        aggregate_id = kind.parse_stream(stream_id)
        if aggregate_id is not None:
            return kind, aggregate_id
    return None
