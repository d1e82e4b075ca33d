"""`orchestrator verify`: prove the log was not altered and still makes sense.

Checks, event by event in position order: positions strictly increase; each stream's versions
run 1, 2, 3, ...; every payload decodes (upcast from its schema); the hash chain holds; and every
workflow and task stream folds legally through the current transition table. Given the head
checkpoints (`anchor_check.py`), it also holds the log to them: the chain alone cannot see the
last events deleted or a chain computed again after an edit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.domain.aggregates import TASK, WORKFLOW, kind_of_stream
from orchestrator.domain.legality import task_violation, workflow_violation
from orchestrator.eventstore.base import EventStore, RecordedEvent
from orchestrator.eventstore.chain import GENESIS, event_hash
from orchestrator.history.anchor_check import AnchorCheck, AnchorReport

_VIOLATIONS: dict[str, Callable[[Any, Any], str | None]] = {
    WORKFLOW.name: workflow_violation,
    TASK.name: task_violation,
}
_PAGE = 5000
_KEEP = 20


@dataclass
class Violation:
    """One thing wrong with the log."""

    position: int
    stream_id: str
    reason: str


@dataclass
class Report:
    """What verify found."""

    events: int = 0
    streams: int = 0
    seconds: float = 0.0
    violations: list[Violation] = field(default_factory=list)
    more_violations: int = 0
    #: What the head checkpoints showed; None when verify was not given them.
    anchors: AnchorReport | None = None

    @property
    def ok(self) -> bool:
        """True when nothing is wrong, the checkpoints included."""
        return not self.violations and (self.anchors is None or self.anchors.ok)

    @property
    def rate(self) -> float:
        """Events checked per second."""
        return self.events / self.seconds if self.seconds else 0.0


class _Checker:
    def __init__(self, anchors: AnchorCheck | None) -> None:
        self.report = Report()
        self.anchors = anchors
        self.position = 0
        self.previous_hash = GENESIS
        self.versions: dict[str, int] = {}
        self.states: dict[str, Any] = {}
        self.broken: set[str] = set()

    def flag(self, event: RecordedEvent, reason: str) -> None:
        if len(self.report.violations) < _KEEP:
            self.report.violations.append(Violation(event.position, event.stream_id, reason))
        else:
            self.report.more_violations += 1

    def check(self, event: RecordedEvent) -> None:
        self.report.events += 1
        if event.position <= self.position:
            self.flag(event, f"position does not increase (after {self.position})")
        self.position = event.position
        expected = event_hash(self.previous_hash, **event.stored_fields())
        if event.hash != expected:
            self.flag(event, "hash chain broken: the event's content or its hash was changed")
        self.previous_hash = event.hash  # the next event is checked against what is stored
        if self.anchors is not None and (reason := self.anchors.observe(event)):
            self.flag(event, reason)
        stream = event.stream_id
        version = self.versions.get(stream, 0) + 1
        if event.version != version:
            self.flag(event, f"version {event.version} where {version} was expected")
        self.versions[stream] = event.version
        if stream not in self.broken:
            self._fold(event)

    def _fold(self, event: RecordedEvent) -> None:
        stream = event.stream_id
        found = kind_of_stream(stream)
        if found is None:
            return  # a stream of no known aggregate: its chain and versions are still checked
        kind = found[0]
        try:
            decoded = kind.decode(event.data, event.schema_version)
        except Exception as exc:
            self.flag(event, f"payload does not decode as {event.type}: {exc}")
            self.broken.add(stream)
            return
        state = self.states.get(stream)
        reason = _VIOLATIONS[kind.name](state, decoded)
        if reason is not None:
            self.flag(event, f"illegal {type(decoded).__name__}: {reason}")
            self.broken.add(stream)
            return
        self.states[stream] = kind.evolve(state, decoded)


async def verify(
    store: EventStore,
    anchors: AnchorCheck | None = None,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Check the whole log (and hold it to `anchors`, read before this is called); the report
    lists the first violations found, in position order. `progress` is told the position
    reached after each page."""
    checker = _Checker(anchors)
    began = time.monotonic()
    after = 0
    while events := await store.read_all(after, _PAGE):
        for event in events:
            checker.check(event)
        after = events[-1].position
        if progress is not None:
            progress(after)
    report = checker.report
    if anchors is not None:
        for position, reason in anchors.missing(checker.position):
            report.violations.append(Violation(position, "the log", reason))
        report.violations.sort(key=lambda violation: violation.position)
        report.more_violations += max(0, len(report.violations) - _KEEP)
        del report.violations[_KEEP:]
        report.anchors = anchors.finish(checker.position)
    report.streams = len(checker.versions)
    report.seconds = time.monotonic() - began
    return report
