"""Writing head checkpoints: every ANCHOR_INTERVAL_SECONDS while the head moves, and at stop.

A checkpoint is written outside the append path, from whatever the head is when it is taken: a
position's hash never changes once committed, so (position, hash) read at any moment is a true
statement about the log, and appends are never slowed down for it.
"""

from __future__ import annotations

import asyncio
import logging

from orchestrator.eventstore.anchor_store import AnchorStore
from orchestrator.eventstore.anchors import Anchor, make_anchor
from orchestrator.eventstore.base import EventStore
from orchestrator.eventstore.errors import EventStoreError
from orchestrator.stopping import stop_tasks

log = logging.getLogger(__name__)


async def write_checkpoint(store: EventStore, anchors: AnchorStore, key: str) -> Anchor | None:
    """Checkpoint the log's head unless it has not moved since the last one; the new checkpoint."""
    head = await store.head_position()
    if head == 0:
        return None
    last = await anchors.last()
    if last is not None and last.position == head:
        return None
    if last is not None and last.position > head:
        # Kept as it is: the older checkpoint is what lets `verify` prove the truncation.
        log.error(
            "the log ends at position %d but was checkpointed at %d (%s): it was truncated; "
            "run `orchestrator verify`",
            head,
            last.position,
            last.at,
        )
    found = await store.read_all(head - 1, 1)
    if not found or found[0].position != head:
        return None
    anchor = make_anchor(head, found[0].hash, key)
    await anchors.append(anchor)
    return anchor


async def checkpoint(store: EventStore, anchors: AnchorStore, key: str) -> Anchor | None:
    """One checkpoint of the head, in every copy `anchors` keeps (after an import); the anchor
    storage is opened and closed here."""
    await anchors.open()
    try:
        return await write_checkpoint(store, anchors, key)
    finally:
        await anchors.close()


class Anchorer:
    """Checkpoints the head of a running server's log on a timer and once more at stop."""

    def __init__(
        self, store: EventStore, anchors: AnchorStore, *, key: str, interval: float
    ) -> None:
        self.store = store
        self.anchors = anchors
        self._key = key
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._opened = False
        #: The last store failure warned about: a database gone for good is one line, not one
        #: traceback per interval.
        self._problem: str | None = None

    async def start(self) -> None:
        """Open the checkpoint storage and start the timer (the event store must be open)."""
        await self.anchors.open()
        self._opened = True
        self._task = asyncio.create_task(self._run(), name="anchorer")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await write_checkpoint(self.store, self.anchors, self._key)
            except EventStoreError as exc:  # a failed checkpoint must not stop the next ones
                self._warn("could not write a checkpoint of the log's head", exc)
            except Exception:
                log.exception("could not write a checkpoint of the log's head")
            else:
                self._problem = None

    async def stop(self) -> None:
        """Stop the timer, write a last checkpoint of the head, close the storage."""
        task, self._task = self._task, None
        await stop_tasks(task)
        if not self._opened:
            return
        try:
            await write_checkpoint(self.store, self.anchors, self._key)
        except EventStoreError as exc:
            self._warn("could not write the checkpoint of the log's head at shutdown", exc)
        except Exception:
            log.exception("could not write the checkpoint of the log's head at shutdown")
        finally:
            self._opened = False
            await self.anchors.close()

    def _warn(self, what: str, exc: EventStoreError) -> None:
        """One WARNING line per distinct failure (the store says the same thing each time)."""
        problem = f"{type(exc).__name__}: {exc}"
        if problem == self._problem:
            return
        self._problem = problem
        log.warning("%s: %s", what, problem)
