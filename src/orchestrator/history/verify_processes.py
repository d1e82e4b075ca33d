"""`verify` of a large SQLite log in several processes at once.

One process checks at most about 140,000 events a second, whatever the machine has: checking an
event (its payload inflated and hashed, decoded, folded through the transition table) is Python,
and the interpreter's lock lets one thread run Python at a time. A log in a file can be read by
several processes at once, each with a lock of its own. Process k of n checks the events of the
streams whose name hashes to k (crc32: the same in every process), and reads every row up to the
same head: the chain link of each of its events (the stored hash of the event before it,
whichever stream that is in) is at hand, and each stream's versions and fold are all in one
process. So every event is checked once, by one process, as `verify` alone would check it; the
parts' findings are merged in position order.

The rows up to the head are the same in every process's snapshot (the log is append-only), so a
server may keep appending meanwhile: what it appends after the head is not checked, as in a
single-process verify.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Collection

import msgspec

from orchestrator.eventstore.base import EventStore
from orchestrator.eventstore.errors import EventStoreError
from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.history.verify_part import PartJob, PartReport

#: Below this many events a verify runs in one process: starting the others (each imports the
#: package, about a third of a second) would cost more than they save.
PROCESSES_FROM = 100_000
#: At most this many processes, whatever the machine has: past four the reading of every row by
#: every process (about a microsecond a row) eats what another process would add.
MAX_PROCESSES = 4


def processes_for(store: EventStore, head: int, asked: int | None) -> tuple[str, int] | None:
    """The log's file and how many processes to check it with, or None to check it in this one:
    `asked` processes if given, else as many as this process may run on (at most MAX_PROCESSES)
    for a log of at least PROCESSES_FROM events. Only a SQLite log can be read by other
    processes this way."""
    if not isinstance(store, SQLiteEventStore):
        return None
    count = asked if asked is not None else _usable_cores() if head >= PROCESSES_FROM else 1
    count = min(count, MAX_PROCESSES)
    return (store.path, count) if count > 1 else None


def _usable_cores() -> int:
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


async def check_in_processes(
    path: str,
    parts: int,
    head: int,
    anchored: Collection[int],
    keep: int,
    progress: Callable[[int], None] | None,
) -> list[PartReport]:
    """Each part's report, checked by `parts` processes at once (`python -m
    orchestrator.history.verify_part`, one job each on its stdin). If one fails, or this is
    cancelled, the others are killed: none is left reading on."""
    reached = [0] * parts
    children: list[asyncio.subprocess.Process] = []

    async def run(part: int) -> PartReport:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "orchestrator.history.verify_part",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        children.append(child)
        assert child.stdin is not None and child.stdout is not None and child.stderr is not None
        job = PartJob(path, part, parts, head, sorted(anchored), keep)
        child.stdin.write(msgspec.json.encode(job) + b"\n")
        await child.stdin.drain()
        child.stdin.close()
        errors = asyncio.ensure_future(child.stderr.read())
        found: PartReport | None = None
        while line := await child.stdout.readline():
            if line.startswith(b"P "):
                reached[part] = int(line[2:])
                if progress is not None:
                    progress(min(reached))
            elif line.startswith(b"R "):
                found = msgspec.json.decode(line[2:], type=PartReport)
        code = await child.wait()
        if found is None or code != 0:
            said = (await errors).decode(errors="replace").strip().splitlines()[-3:]
            raise EventStoreError(
                f"verify: the process checking part {part + 1} of {parts} of {path} failed "
                f"(exit {code}): {' | '.join(said) or 'no output'}"
            )
        return found

    try:
        return list(await asyncio.gather(*(run(part) for part in range(parts))))
    finally:
        for child in children:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
