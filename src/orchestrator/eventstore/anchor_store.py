"""Where head checkpoints are kept: the contract, and memory (SQLite: `sqlite_anchors.py`).

A durable backend keeps two copies, because each survives what the other does not: a table goes
wherever the database goes (a copy, a backup), and the anchor file `<database>.anchors` survives
the database being wiped or replaced, which takes the table with it. Both are append-only: the
table by triggers, like the events table, the file by being opened only to append.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.eventstore.anchors import Anchor, read_file


@dataclass
class StoredAnchors:
    """Every checkpoint found, by where it was found, and the lines that were not checkpoints."""

    #: (where, checkpoints) pairs: "the database", the anchor file's path, an exported copy.
    sources: list[tuple[str, list[Anchor]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Sentences about copies that were expected but not found (not violations by themselves).
    notes: list[str] = field(default_factory=list)


class AnchorStore(Protocol):
    """Keeps head checkpoints, append-only."""

    async def open(self) -> None:
        """Prepare the storage (the event store must be open)."""

    async def close(self) -> None:
        """Release what `open` took."""

    async def last(self) -> Anchor | None:
        """The most recent checkpoint, None if there is none."""

    async def append(self, anchor: Anchor) -> None:
        """Keep one more checkpoint, durably, in every copy."""

    async def read(self) -> StoredAnchors:
        """Every checkpoint kept, from every copy."""


class InMemoryAnchors:
    """Checkpoints of an in-memory log: they live exactly as long as the log they pin."""

    def __init__(self) -> None:
        self._anchors: list[Anchor] = []

    async def open(self) -> None:
        """Nothing to prepare."""

    async def close(self) -> None:
        """Nothing to release."""

    async def last(self) -> Anchor | None:
        """The most recent checkpoint."""
        return self._anchors[-1] if self._anchors else None

    async def append(self, anchor: Anchor) -> None:
        """Keep it in the list."""
        self._anchors.append(anchor)

    async def read(self) -> StoredAnchors:
        """Every checkpoint, as one source."""
        return StoredAnchors(sources=[("memory", list(self._anchors))])


async def read_anchors(anchors: AnchorStore, exported: str | None = None) -> StoredAnchors:
    """Every checkpoint of a log (each copy its backend keeps), plus an exported copy.

    AnchorFileError if the exported copy cannot be read: the operator named it, so it must count.
    The anchor storage is opened and closed here (the event store must be open).
    """
    await anchors.open()
    try:
        found = await anchors.read()
    finally:
        await anchors.close()
    if exported is not None and not any(_same_file(exported, where) for where, _ in found.sources):
        extra, problems = read_file(exported)
        found.sources.append((exported, extra))
        found.problems.extend(problems)
    return found


def _same_file(one: str, other: str) -> bool:
    try:
        return os.path.samefile(one, other)
    except OSError:
        return False
