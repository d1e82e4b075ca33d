"""Who writes the read models when several processes share one log (PostgreSQL).

The read models live in the database, shared by every process. One process at a time, the
writer, applies the log to them; the others follow: they wait for the writer's checkpoint to
move, drop what their caches hold of the aggregates that changed, and reload the counters. A
read on any process therefore sees what the writer applied, and a command's answer waits until
the checkpoint has its position (read-your-writes on every process). When the writer dies its
claim ends with its connection and a follower takes over. Two writers at once cannot corrupt the
tables anyway: each save checks the stored checkpoint (ProjectionMoved).

Where only one process has the log (SQLite, memory) there is no leadership: it always writes.
"""

from __future__ import annotations

from typing import Protocol


class Leadership(Protocol):
    """The claim to write the read models of a shared log."""

    @property
    def leading(self) -> bool:
        """True while this process holds the claim."""

    async def try_lead(self) -> bool:
        """Take the claim if nobody holds it; True if this process holds it now."""

    async def wait_for_checkpoint(self, after: int, timeout: float) -> int:
        """Wait until the writer's checkpoint passes `after`, or `timeout` seconds; the
        checkpoint as last known."""

    async def close(self) -> None:
        """Give the claim up and stop listening."""
