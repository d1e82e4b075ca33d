"""The part of `orchestrator verify` that holds the log to its head checkpoints.

The hash chain alone cannot see the last events deleted, a wiped and refilled events table, or a
payload edited with the chain computed again: each leaves a chain that holds. A checkpoint says
what the head was at a moment, so the log must still reach its position with the same hash there.
With INTEGRITY_KEY the checkpoints are also signed, so whoever rewrites the log cannot write new
checkpoints that agree with it; without the key they can, and the summary line says so.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from orchestrator.eventstore.anchor_store import StoredAnchors
from orchestrator.eventstore.anchors import Anchor, encode_anchor, signature_problem


def merged(stored: StoredAnchors) -> dict[Anchor, list[str]]:
    """Each distinct checkpoint with the copies it was found in, oldest first."""
    found: dict[Anchor, list[str]] = {}
    for where, anchors in stored.sources:
        for anchor in anchors:
            places = found.setdefault(anchor, [])
            if where not in places:
                places.append(where)
    return dict(sorted(found.items(), key=lambda item: (item[0].at, item[0].position)))


@dataclass
class AnchorReport:
    """What the checkpoints showed, as sentences for the report."""

    summary: str
    #: One line per checkpoint that cannot be trusted, or per unreadable line of a copy.
    bad: list[str] = field(default_factory=list)
    #: "log truncated: ..." when the log no longer reaches the furthest checkpoint.
    truncated: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing the checkpoints show is wrong."""
        return not self.bad and self.truncated is None

    def lines(self) -> list[str]:
        """The summary, then notes, then what is wrong, one sentence a line."""
        found = [self.summary, *(f"note: {note}" for note in self.notes), *self.bad]
        return found if self.truncated is None else [*found, self.truncated]


def anchor_lines(stored: StoredAnchors) -> list[bytes]:
    """Every distinct checkpoint as a line of an anchor file, oldest first (for an export)."""
    return [encode_anchor(anchor) for anchor in merged(stored)]


class AnchorCheck:
    """Collects the checkpoints, compares each with the event at its position during the scan.

    The checkpoints must be read before the scan begins: one written meanwhile by a running
    server could point past the end the scan saw, and would look like a truncation.
    """

    def __init__(self, stored: StoredAnchors, key: str) -> None:
        self._stored = stored
        self._key = key
        self._anchors = merged(stored)
        self._at: dict[int, list[Anchor]] = {}
        for anchor in self._anchors:
            self._at.setdefault(anchor.position, []).append(anchor)
        self._seen: set[int] = set()
        self._last_match = 0

    @property
    def positions(self) -> Collection[int]:
        """The positions some checkpoint names (a scan need observe only the events there)."""
        return self._at.keys()

    def observe_hash(self, position: int, hash_: str) -> str | None:
        """Why the event at `position`, of hash `hash_`, contradicts a checkpoint there, or
        None."""
        anchors = self._at.get(position)
        if not anchors:
            return None
        self._seen.add(position)
        wrong = [anchor for anchor in anchors if anchor.hash != hash_]
        if not wrong:
            self._last_match = position
            return None
        anchor = wrong[0]
        return (
            f"its hash is not the one checkpointed at {anchor.at} ({self._where(anchor)}): "
            f"an event in positions {self._last_match + 1}..{position} was changed, "
            "removed or replaced since"
        )

    def missing(self, end: int) -> list[tuple[int, str]]:
        """Checkpointed positions, up to the log's `end`, that hold no event, with a reason."""
        return [
            (position, f"no event here, though it was checkpointed at {anchors[0].at}")
            for position, anchors in sorted(self._at.items())
            if position <= end and position not in self._seen
        ]

    def finish(self, end: int) -> AnchorReport:
        """The report, once every event up to position `end` (the last one) was observed."""
        report = AnchorReport(summary=self._summary(), notes=list(self._stored.notes))
        report.bad.extend(self._stored.problems)
        report.bad.extend(self._signature_lines(end))
        furthest = max(self._anchors, key=lambda anchor: anchor.position, default=None)
        if furthest is not None and furthest.position > end:
            report.truncated = (
                f"log truncated: checkpoint at position {furthest.position} ({furthest.at}, "
                f"{self._where(furthest)}) but the log ends at {end}"
            )
        return report

    def _where(self, anchor: Anchor) -> str:
        return "in " + " and ".join(self._anchors.get(anchor, ["?"]))

    def _signature_lines(self, end: int) -> list[str]:
        if not self._key:
            return []
        signed = [anchor.at for anchor in self._anchors if anchor.is_signed]
        if not signed:
            if end == 0:
                return []
            return [
                "BAD CHECKPOINTS: INTEGRITY_KEY is set but no signed checkpoint was found: they "
                "were removed, or no server has run with the key yet (one writes a checkpoint "
                "at every stop)"
            ]
        lines: list[str] = []
        first_signed = min(signed)
        for anchor in self._anchors:
            if not anchor.is_signed and anchor.at < first_signed:
                continue  # written before the key was adopted: its position is still checked
            problem = signature_problem(anchor, self._key)
            if problem is not None:
                lines.append(
                    f"BAD CHECKPOINT at position {anchor.position} ({anchor.at}, "
                    f"{self._where(anchor)}): {problem}"
                )
        return lines

    def _summary(self) -> str:
        anchors = list(self._anchors)
        if not anchors:
            return (
                "anchors: no checkpoints found: the last events deleted, or a chain recomputed "
                "after an edit, would not be detected"
            )
        counts = ", ".join(f"{len(found)} in {where}" for where, found in self._stored.sources)
        last = max(anchors, key=lambda anchor: (anchor.position, anchor.at))
        noun = "checkpoint" if len(anchors) == 1 else "checkpoints"
        head = (
            f"anchors: {len(anchors)} {noun} ({counts}), last at position {last.position} "
            f"({last.at})"
        )
        signed = sum(1 for anchor in anchors if anchor.is_signed)
        rewrite = (
            "a rewrite by someone who can write the database (and its anchor file, where it has "
            "one) would not be detected"
        )
        if signed and self._key:
            unsigned = len(anchors) - signed
            older = f" ({unsigned} unsigned)" if unsigned else ""
            return f"{head}, signed, signatures checked with INTEGRITY_KEY{older}"
        if signed:
            return f"{head}, signed, but INTEGRITY_KEY is not set so not checked: {rewrite}"
        return f"{head}, unsigned: {rewrite}; set INTEGRITY_KEY"
