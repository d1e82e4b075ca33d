"""Work split between several processes of this package, one part each: for bulk passes over a
log (`verify` of a SQLite or PostgreSQL log, a rebuild of a SQLite one) that one process cannot
speed up past one core, as Python runs one thread at a time.

Each part is `python -m orchestrator.cli_parts`: a new interpreter, which reads its job (a JSON
line) on stdin, writes `P <position>` lines as it goes and one `R <result>` line at the end. The
jobs and results are defined here, where both sides see them. Not multiprocessing: its spawned
children import the parent's main module again, which a program that calls these tools without
an `if __name__ == "__main__"` guard cannot survive, and forking a process with an event loop
and threads running is not safe.

A leaf: it imports nothing of the project, so the layers that start parts (history, a backend's
read-model tables) and the backends that read a part (eventstore/sqlite_parts.py,
postgres_parts.py) may all use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import msgspec

T = TypeVar("T")

#: The module each part runs (`python -m`).
PARTS_MODULE = "orchestrator.cli_parts"
#: The longest line a part may write: a result carries a line per checkpoint of the log (part 0
#: of a verify), which a log checkpointed every minute for years makes tens of megabytes.
_MAX_LINE = 1 << 30

#: Below this many events a pass runs in one process: starting the others (each imports the
#: package, a fifth of a second) would cost more than they save.
PROCESSES_FROM = 100_000
#: The same for a log on a database server (PostgreSQL), whose parts each also connect and load
#: the lookups, and which gains less per part (every part reads every row through the server):
#: measured on 2 cores, two parts took as long as one process at 100,000 events, 0.7 of it at
#: 1,000,000.
SERVED_PROCESSES_FROM = 300_000
#: At most this many processes, whatever the machine has: past four the reading of the log by
#: every process eats what another process would add.
MAX_PROCESSES = 4


class PartFailed(Exception):
    """A part's process failed; the message says which, how, and its last error lines."""


class CheckJob(msgspec.Struct, array_like=True, tag="check"):
    """verify: check the events up to `head` of the streams of one part of the log at `log`: a
    SQLite file, or with `schema` a PostgreSQL URL (base.PartSource)."""

    log: str
    part: int
    parts: int
    head: int
    #: The positions the head checkpoints name (part 0 reports the events there).
    anchored: list[int]
    #: How many violations to keep.
    keep: int
    schema: str | None = None


class CheckReport(msgspec.Struct):
    """What one part's check found."""

    #: Its events, and every row it read (its own and the others', for their hashes): the
    #: parts' events add up to the rows, or a row was in no part or in two.
    events: int = 0
    rows: int = 0
    streams: int = 0
    #: Its first violations, (position, stream_id, reason), in position order.
    violations: list[tuple[int, str, str]] = []
    more_violations: int = 0
    #: Part 0 only: (position, stream_id, stored hash) of the event at each checkpointed
    #: position.
    anchored: list[tuple[int, str, str]] = []


class FoldJob(msgspec.Struct, array_like=True, tag="fold"):
    """A rebuild: fold the events up to `until` of the streams of one part of the log at `path`
    into read-model tables of the file `scratch`."""

    path: str
    scratch: str
    part: int
    parts: int
    until: int


class FoldResult(msgspec.Struct):
    """What one part folded."""

    events: int


def process_count(head: int, asked: int | None, *, served: bool = False) -> int:
    """How many processes a pass over a log of `head` events takes: `asked` if given, else as
    many as this process may run on from PROCESSES_FROM events (SERVED_PROCESSES_FROM for a log
    on a database server; one below); at most MAX_PROCESSES; one for an empty log, whatever was
    asked."""
    if not head:
        return 1
    least = SERVED_PROCESSES_FROM if served else PROCESSES_FROM
    count = asked if asked is not None else usable_cores() if head >= least else 1
    return min(count, MAX_PROCESSES)


def _child_environment() -> dict[str, str]:
    """This environment, with the folder this package was imported from first on the path: a
    part runs the same code as the process that started it, installed or not."""
    here = str(Path(__file__).resolve().parents[1])
    found = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": here if not found else os.pathsep.join((here, found))}


def usable_cores() -> int:
    """The cores this process may run on."""
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


async def run_parts(
    jobs: Sequence[CheckJob | FoldJob],
    result: type[T],
    progress: Callable[[int], None] | None,
    what: str,
) -> list[T]:
    """Each job's result, from a process each, all at once; `progress` gets the least position
    the parts have reached. PartFailed, naming `what` and quoting the part's last error lines,
    if one fails; then, or if this is cancelled, the others are killed: none is left reading
    on. A part whose stdin closes (this process died) stops too (`watch_parent`)."""
    reached = [0] * len(jobs)

    async def run(part: int, job: CheckJob | FoldJob) -> T:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            PARTS_MODULE,
            env=_child_environment(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_MAX_LINE,
        )
        try:
            assert child.stdin and child.stdout and child.stderr
            child.stdin.write(msgspec.json.encode(job) + b"\n")
            await child.stdin.drain()  # stdin stays open: its end tells the part to stop
            errors = asyncio.ensure_future(child.stderr.read())
            found: T | None = None
            while line := await child.stdout.readline():
                if line.startswith(b"P "):
                    reached[part] = int(line[2:])
                    if progress is not None:
                        progress(min(reached))
                elif line.startswith(b"R "):
                    found = msgspec.json.decode(line[2:], type=result)
            code = await child.wait()
            if found is None or code != 0:
                said = (await errors).decode(errors="replace").strip().splitlines()[-3:]
                raise PartFailed(
                    f"{what}: the process of part {part + 1} of {len(jobs)} failed (exit "
                    f"{code}): {' | '.join(said) or 'no output'}"
                )
            return found
        finally:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
            if child.stdin is not None:
                child.stdin.close()

    try:
        async with asyncio.TaskGroup() as group:  # one failing cancels (and stops) the others
            running = [group.create_task(run(part, job)) for part, job in enumerate(jobs)]
    except* PartFailed as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in running]


def watch_parent() -> None:
    """In a part: end this process as soon as its stdin closes, which it does when the process
    that started it dies (a SIGKILL gives that one no chance to stop its parts)."""

    def watch() -> None:
        # The file descriptor, not sys.stdin: a daemon thread blocked in a buffered reader
        # holds its lock, and the interpreter aborts at exit when it cannot take it.
        while os.read(0, 4096):
            pass
        os._exit(3)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
