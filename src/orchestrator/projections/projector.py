"""The projector: follows the log from its checkpoint and keeps the read models up to date.

It applies events in batches (one storage transaction per batch), keeps recently read workflows
in an in-process cache so GETs do not touch the database, and keeps the stats as counters, so
reading them costs the same for a hundred or a million workflows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Sequence

from orchestrator.domain.events import WorkflowStarted, decode_event
from orchestrator.domain.states import State
from orchestrator.domain.workflow import Workflow, evolve
from orchestrator.eventstore.base import EventStore, RecordedEvent
from orchestrator.projections.storage import ProjectionStorage

log = logging.getLogger(__name__)

_BATCH = 2000
_WORKFLOW_STREAM = "workflow-"


class Projector:
    """Applies the log to the read models and answers reads from them."""

    def __init__(
        self, store: EventStore, storage: ProjectionStorage, *, cache_size: int = 100_000
    ) -> None:
        self._store = store
        self._storage = storage
        self._cache: OrderedDict[int, Workflow] = OrderedDict()
        self._cache_size = cache_size
        self._stats: dict[str, int] = {}
        self.position = 0
        self._advanced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._apply_lock = asyncio.Lock()

    async def start(self) -> None:
        """Load the checkpoint and stats, catch up with the log, then follow it."""
        self.position = await self._storage.load_checkpoint()
        self._stats = await self._storage.load_stats()
        await self.catch_up()
        self._task = asyncio.create_task(self._follow(), name="projector")

    async def stop(self) -> None:
        """Stop following the log."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def catch_up(self) -> None:
        """Apply every committed event past the checkpoint."""
        while await self._apply_next_batch():
            pass

    async def _follow(self) -> None:
        while True:
            try:
                if not await self._apply_next_batch():
                    await self._store.wait_for_events(self.position, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # keep following: a database hiccup must not stop the read models
                log.exception("projector failed to apply events after position %d", self.position)
                await asyncio.sleep(0.5)

    async def _apply_next_batch(self) -> bool:
        async with self._apply_lock:
            events = await self._store.read_all(self.position, _BATCH)
            if not events:
                return False
            await self._apply(events)
            return True

    async def _apply(self, events: Sequence[RecordedEvent]) -> None:
        by_workflow: dict[int, list[RecordedEvent]] = {}
        for recorded in events:
            if recorded.stream_id.startswith(_WORKFLOW_STREAM):
                workflow_id = int(recorded.stream_id[len(_WORKFLOW_STREAM) :])
                by_workflow.setdefault(workflow_id, []).append(recorded)
        missing = [i for i in by_workflow if i not in self._cache]
        stored = await self._storage.load_workflows(missing) if missing else {}
        changed: dict[int, Workflow] = {}
        stats_delta: dict[str, int] = {}
        for workflow_id, stream_events in by_workflow.items():
            before = self._cache.get(workflow_id) or stored.get(workflow_id)
            after = before
            for recorded in stream_events:
                event = decode_event(recorded.data)
                if after is not None and after.version >= recorded.version:
                    continue  # already applied (a row saved ahead of an old checkpoint)
                if after is None and not isinstance(event, WorkflowStarted):
                    log.error("stream %s does not begin with WorkflowStarted", recorded.stream_id)
                    break
                after = evolve(after, event)
            if after is None or after is before:
                continue
            changed[workflow_id] = after
            _count(stats_delta, before, -1)
            _count(stats_delta, after, +1)
        last = events[-1].position
        await self._storage.save(changed, stats_delta, last)
        for workflow_id, workflow in changed.items():
            self._remember(workflow_id, workflow)
        for state, delta in stats_delta.items():
            self._stats[state] = self._stats.get(state, 0) + delta
        self.position = last
        self._advanced.set()
        self._advanced = asyncio.Event()

    def _remember(self, workflow_id: int, workflow: Workflow) -> None:
        self._cache[workflow_id] = workflow
        self._cache.move_to_end(workflow_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def wait_for(self, position: int, timeout: float = 10.0) -> None:
        """Return once the read models include `position` (a client then sees its own write)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.position < position:
            advanced = self._advanced
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"read models did not reach position {position} in time")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await advanced.wait()

    async def get(self, workflow_id: int) -> Workflow | None:
        """The workflow's read model, deleted ones included; None if it never existed."""
        cached = self._cache.get(workflow_id)
        if cached is not None:
            return cached
        found = (await self._storage.load_workflows([workflow_id])).get(workflow_id)
        if found is not None and self._cache.get(workflow_id) is None:
            self._remember(workflow_id, found)
        return self._cache.get(workflow_id, found)

    def stats(self) -> dict[str, int]:
        """Workflow counts by state name (deleted workflows excluded)."""
        return {state.value: self._stats.get(state.value, 0) for state in State}

    async def unfinished_workflow_ids(self) -> list[int]:
        """Workflows the engine must resume, as of the applied position."""
        return await self._storage.unfinished_workflow_ids()

    async def max_workflow_id(self) -> int:
        """The highest workflow id ever projected."""
        return await self._storage.max_workflow_id()


def _count(delta: dict[str, int], workflow: Workflow | None, sign: int) -> None:
    if workflow is not None and not workflow.deleted:
        delta[workflow.state.value] = delta.get(workflow.state.value, 0) + sign
