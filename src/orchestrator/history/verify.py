"""`orchestrator verify`: prove the log was not altered and still makes sense.

Checks, event by event in position order: positions strictly increase; each stream's versions
run 1, 2, 3, ...; every payload decodes (upcast from its schema); the hash chain holds; and every
workflow and task stream folds legally through the current transition table. Given the head
checkpoints (`anchor_check.py`), it also holds the log to them: the chain alone cannot see the
last events deleted or a chain computed again after an edit.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.domain.aggregates import TASK, WORKFLOW, kind_of_stream
from orchestrator.domain.legality import task_violation, workflow_violation
from orchestrator.eventstore.base import EventStore, PartedLog, PartSource, RecordedEvent
from orchestrator.eventstore.chain import GENESIS, ChainReader, ChainRow, linked_content
from orchestrator.eventstore.errors import EventStoreError
from orchestrator.history.anchor_check import AnchorCheck, AnchorReport
from orchestrator.part_processes import CheckJob, CheckReport, PartFailed, process_count, run_parts
from orchestrator.projections.rebuild import paused_collector

_VIOLATIONS: dict[str, Callable[[Any, Any], str | None]] = {
    WORKFLOW.name: workflow_violation,
    TASK.name: task_violation,
}
_PAGE = 5000
_KEEP = 20
_CHAIN_BROKEN = "hash chain broken: the event's content or its hash was changed"


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
    #: How many processes checked the log (cli_parts.py).
    processes: int = 1
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


#: How a stream folds (in `Checker.streams`): its kind's decode, legality rule and evolve.
_Fold = tuple[
    Callable[[bytes, int], Any], Callable[[Any, Any], str | None], Callable[[Any, Any], Any]
]


def _fold_of(stream: str) -> _Fold | None:
    """How a stream folds, or None for a stream of no known aggregate (its chain and versions
    are still checked)."""
    found = kind_of_stream(stream)
    if found is None:
        return None
    kind = found[0]
    return kind.decode, _VIOLATIONS[kind.name], kind.evolve


class Checker:
    def __init__(self, anchors: AnchorCheck | None, keep: int = _KEEP) -> None:
        self.report = Report()
        self.keep = keep
        self.anchors = anchors
        self.position = 0
        self.previous_hash = GENESIS
        #: Each stream's [version, state, fold] (the fold None once the stream broke, or for a
        #: stream of no known aggregate): one lookup an event.
        self.streams: dict[str, list[Any]] = {}

    def flag(self, position: int, stream_id: str, reason: str) -> None:
        if len(self.report.violations) < self.keep:
            self.report.violations.append(Violation(position, stream_id, reason))
        else:
            self.report.more_violations += 1

    def check(self, rows: list[ChainRow], links: list[str] | None = None) -> None:
        """Check a page of events, in position order, after the pages checked before: each
        linked to the stored hash of the event before it (in `links`, when the rows are not
        all the log's: cli_parts.py)."""
        if not rows:
            return
        if links is None:
            links = [self.previous_hash, *(row[7] for row in rows[:-1])]
        self.report.events += len(rows)
        flag = self.flag
        sha256 = hashlib.sha256
        streams = self.streams
        anchors = self.anchors
        checkpointed = anchors.positions if anchors is not None else ()
        last = self.position
        for (position, stream_id, version, name, data, schema, content, stored), previous in zip(
            rows, links, strict=True
        ):
            if position <= last:
                flag(position, stream_id, f"position does not increase (after {last})")
            last = position
            # Each event is checked against what is stored as the hash of the one before.
            if sha256(previous.encode() + content).hexdigest() != stored:
                flag(position, stream_id, _CHAIN_BROKEN)
            if anchors is not None and position in checkpointed:
                reason = anchors.observe_hash(position, stored)
                if reason:
                    flag(position, stream_id, reason)
            stream = streams.get(stream_id)
            if stream is None:
                stream = streams[stream_id] = [0, None, _fold_of(stream_id)]
            expected = stream[0] + 1
            if version != expected:
                flag(position, stream_id, f"version {version} where {expected} was expected")
            stream[0] = version
            fold = stream[2]
            if fold is None:
                continue
            decode, violation, evolve = fold
            try:
                decoded = decode(data, schema)
            except Exception as exc:
                flag(position, stream_id, f"payload does not decode as {name}: {exc}")
                stream[2] = None
                continue
            state = stream[1]
            reason = violation(state, decoded)
            if reason is not None:
                flag(position, stream_id, f"illegal {type(decoded).__name__}: {reason}")
                stream[2] = None
                continue
            stream[1] = evolve(state, decoded)
        self.position = last
        self.previous_hash = rows[-1][7]

    def finish(self) -> None:
        """Count the streams and drop their folded states, before the garbage collector is on
        again: its first pass would walk every one of them, in vain (they hold no cycle)."""
        self.report.streams = len(self.streams)
        self.streams.clear()


def _reader(store: EventStore) -> Callable[[int, int], Awaitable[list[ChainRow]]]:
    """How to read the log a page at a time as ChainRows: the store's own way if it has one
    (it can skip building events), else from its events."""
    if isinstance(store, ChainReader):
        return store.read_chain

    async def read(after: int, limit: int) -> list[ChainRow]:
        return [_chain_row(event) for event in await store.read_all(after, limit)]

    return read


def _chain_row(event: RecordedEvent) -> ChainRow:
    fields = event.stored_fields()
    content = linked_content(
        event.position,
        event.stream_id,
        event.version,
        event.type,
        fields["data"].encode(),
        fields["metadata"].encode(),
        fields["recorded_at"].encode(),
        event.schema_version,
    )
    return (
        event.position,
        event.stream_id,
        event.version,
        event.type,
        event.data,
        event.schema_version,
        content,
        event.hash,
    )


async def verify(
    store: EventStore,
    anchors: AnchorCheck | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    processes: int | None = None,
) -> Report:
    """Check the whole log (and hold it to `anchors`, read before this is called); the report
    lists the first violations found, in position order. `progress` is told the position
    reached after each page.

    A log other processes can read (SQLite, PostgreSQL) is checked by `processes` processes at
    once, each a part of its streams (cli_parts.py); by default by one a core (at most
    part_processes.MAX_PROCESSES) when it holds part_processes.PROCESSES_FROM events or more
    (SERVED_PROCESSES_FROM on PostgreSQL), else by this one.
    """
    began = time.monotonic()
    count, head, source = 1, 0, None
    if isinstance(store, PartedLog):
        source = store.part_source()
        head = await store.head_position()
        count = process_count(head, processes, served=source.schema is not None)
    if source is not None and count > 1:
        report = await _check_in_processes(source, count, head, anchors, progress)
        report.processes, reached = count, head
    else:
        report, reached = await _check_here(store, anchors, progress)
    if anchors is not None:
        for position, reason in anchors.missing(reached):
            report.violations.append(Violation(position, "the log", reason))
        report.anchors = anchors.finish(reached)
    report.violations.sort(key=lambda violation: violation.position)
    report.more_violations += max(0, len(report.violations) - _KEEP)
    del report.violations[_KEEP:]
    report.seconds = time.monotonic() - began
    return report


async def _check_here(
    store: EventStore, anchors: AnchorCheck | None, progress: Callable[[int], None] | None
) -> tuple[Report, int]:
    """The report of a check in this process, and the last position it reached."""
    checker = Checker(anchors)
    read = _reader(store)
    # The next page is read while this one is checked (the store reads in a thread of its own,
    # or a server).
    ahead = asyncio.ensure_future(read(0, _PAGE))
    try:
        with paused_collector():
            while rows := await ahead:
                after = rows[-1][0]
                ahead = asyncio.ensure_future(read(after, _PAGE))
                checker.check(rows)
                if progress is not None:
                    progress(after)
            checker.finish()
    finally:
        ahead.cancel()
    return checker.report, checker.position


async def _check_in_processes(
    source: PartSource,
    count: int,
    head: int,
    anchors: AnchorCheck | None,
    progress: Callable[[int], None] | None,
) -> Report:
    """The merged report of a check of the log at `source` up to `head` in `count`
    processes, each reading every row and checking the streams of its part (the events
    linked to the stored hash of the row before each, whichever part that is in); the
    checkpoints observed through part 0."""
    anchored = sorted(anchors.positions) if anchors is not None else []
    jobs = [
        CheckJob(source.location, part, count, head, anchored, _KEEP, source.schema)
        for part in range(count)
    ]
    try:
        parts = await run_parts(jobs, CheckReport, progress, f"verify of {source.name}")
    except PartFailed as exc:
        raise EventStoreError(str(exc)) from None
    checked = sum(part.events for part in parts)
    if checked != parts[0].rows:
        raise EventStoreError(
            f"verify of {source.name}: its parts checked {checked} events of {parts[0].rows} "
            "(a row in no part, or in two)"
        )
    report = Report()
    for part in parts:
        report.events += part.events
        report.streams += part.streams
        report.violations.extend(Violation(*found) for found in part.violations)
        report.more_violations += part.more_violations
    if anchors is not None:
        for position, stream_id, stored in parts[0].anchored:  # in position order
            reason = anchors.observe_hash(position, stored)
            if reason:
                report.violations.append(Violation(position, stream_id, reason))
    return report
