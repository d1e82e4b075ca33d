"""Where the read models live: the storage contract and its in-memory implementation.

A read model row is the folded `Workflow` itself (msgspec-encoded), plus the columns that lists,
recovery and stats need. Each `save` stores rows, stats deltas and the checkpoint together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from orchestrator.domain.workflow import Workflow


def needs_engine(workflow: Workflow) -> bool:
    """True when the engine must pick the workflow up after a restart."""
    if workflow.deleted:
        return False
    return workflow.step is not None or (
        workflow.needs_step() and workflow.is_driven_automatically()
    )


class ProjectionStorage(Protocol):
    """Durable home of the read models and their checkpoint."""

    async def open(self) -> None:
        """Connect and create the tables."""

    async def close(self) -> None:
        """Release the connection."""

    async def load_checkpoint(self) -> int:
        """The last log position applied (0 when nothing was)."""

    async def load_stats(self) -> dict[str, int]:
        """Workflow counts by state, deleted workflows excluded."""

    async def load_workflows(self, workflow_ids: Iterable[int]) -> dict[int, Workflow]:
        """The stored rows for these ids (deleted ones included); missing ids are left out."""

    async def save(
        self, workflows: Mapping[int, Workflow], stats_delta: Mapping[str, int], position: int
    ) -> None:
        """Store rows, add the deltas to the stats and move the checkpoint, atomically."""

    async def unfinished_workflow_ids(self) -> list[int]:
        """Ids of workflows the engine must resume."""

    async def max_workflow_id(self) -> int:
        """The highest workflow id ever projected (deleted ones included), 0 if none."""


class InMemoryProjectionStorage:
    """Read models in dicts: for tests and the in-memory event store."""

    def __init__(self) -> None:
        self._rows: dict[int, Workflow] = {}
        self._stats: dict[str, int] = {}
        self._checkpoint = 0

    async def open(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to release."""

    async def load_checkpoint(self) -> int:
        """The last applied position."""
        return self._checkpoint

    async def load_stats(self) -> dict[str, int]:
        """Counts by state."""
        return dict(self._stats)

    async def load_workflows(self, workflow_ids: Iterable[int]) -> dict[int, Workflow]:
        """Stored rows for these ids."""
        return {i: self._rows[i] for i in workflow_ids if i in self._rows}

    async def save(
        self, workflows: Mapping[int, Workflow], stats_delta: Mapping[str, int], position: int
    ) -> None:
        """Store everything at once (nothing can interleave: no await inside)."""
        self._rows.update(workflows)
        for state, delta in stats_delta.items():
            self._stats[state] = self._stats.get(state, 0) + delta
        self._checkpoint = position

    async def unfinished_workflow_ids(self) -> list[int]:
        """Workflows the engine must resume."""
        return sorted(i for i, w in self._rows.items() if needs_engine(w))

    async def max_workflow_id(self) -> int:
        """Highest id seen."""
        return max(self._rows, default=0)
