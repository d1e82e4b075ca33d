"""What the projector knows about each kind of aggregate it keeps a read model of.

A read model row is the folded aggregate itself (msgspec-encoded), plus the columns that lists,
recovery and stats need. Adding a kind of aggregate means adding one `AggregateType` to the
domain's registry (`domain/aggregates.py`) and one `ReadModel` here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from orchestrator.domain.aggregates import TASK, WORKFLOW, AggregateType, kind_of_stream
from orchestrator.domain.workflow import Workflow


class Row(msgspec.Struct, frozen=True):
    """One read-model row as storage keeps it."""

    kind: str
    id: int
    status: str
    parent_id: int | None
    deleted: bool
    needs_engine: bool
    state: bytes


@dataclass(frozen=True, eq=False)
class ReadModel:
    """How one kind of aggregate is filed and decoded.

    The kind's name, streams, events and statuses come from the domain's registry
    (`aggregate`); this adds the columns a row is filed under. There is one of each kind
    (WORKFLOWS, TASKS): compared and hashed by identity, as the projector keys its batches by
    (read model, id) for every event.
    """

    aggregate: AggregateType[Any, Any]
    status: Callable[[Any], str]
    parent_id: Callable[[Any], int | None]
    needs_engine: Callable[[Any], bool]

    @property
    def kind(self) -> str:
        """The kind's name, as rows and counters are keyed."""
        return self.aggregate.name

    @property
    def statuses(self) -> tuple[str, ...]:
        """Every status the kind's counters count."""
        return self.aggregate.statuses

    @property
    def state_type(self) -> type[Any]:
        """The folded aggregate's type."""
        return self.aggregate.state_type

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
    aggregate=WORKFLOW,
    status=lambda w: w.state.value,
    parent_id=lambda w: None,
    needs_engine=workflow_needs_engine,
)

TASKS = ReadModel(
    aggregate=TASK,
    status=lambda t: t.status.value,
    parent_id=lambda t: t.workflow_id,
    needs_engine=lambda t: t.needs_run(),
)

READ_MODELS: tuple[ReadModel, ...] = (WORKFLOWS, TASKS)
_BY_KIND = {model.kind: model for model in READ_MODELS}


#: Streams already parsed by `read_model_of` (a batch or a rebuild meets each stream many
#: times in a row); emptied when it holds _STREAMS_KEPT of them.
_streams: dict[str, tuple[ReadModel, int] | None] = {}
_STREAMS_KEPT = 16_384


def read_model_of(stream_id: str) -> tuple[ReadModel, int] | None:
    """The read model a stream belongs to and the aggregate's id, or None for other streams."""
    try:
        return _streams[stream_id]
    except KeyError:
        pass
    found = kind_of_stream(stream_id)
    model = None if found is None else (_BY_KIND[found[0].name], found[1])
    if len(_streams) >= _STREAMS_KEPT:
        _streams.clear()
    _streams[stream_id] = model
    return model
