"""The history commands of the CLI: replay, verify, export, import, import-original,
rebuild-projections.

Each opens the database named by DATABASE_URL through the same factory as the server
(`backend.make_backend`; the server may be running on it at the same time), does its work, and
returns the process exit code.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

import msgspec

from orchestrator.backend import Backend, make_backend
from orchestrator.cli_progress import display, meter
from orchestrator.domain.workflow import Workflow
from orchestrator.eventstore.anchor_store import read_anchors
from orchestrator.eventstore.anchoring import checkpoint
from orchestrator.eventstore.errors import EventStoreError
from orchestrator.history.anchor_check import AnchorCheck
from orchestrator.history.anchor_check import anchor_lines as exported_anchor_lines
from orchestrator.history.import_original import plan_import, write_import
from orchestrator.history.original_rows import ImportRefused, read_original
from orchestrator.history.replay import differences, missing_version, replay, table
from orchestrator.history.transfer import export_lines, import_lines
from orchestrator.history.verify import verify
from orchestrator.http.conversions import workflow_out
from orchestrator.projections import rebuild as rebuilding
from orchestrator.projections.models import WORKFLOWS
from orchestrator.projections.projector import Projector
from orchestrator.settings import Settings, redact_url

_encoder = msgspec.json.Encoder()


class CommandFailed(Exception):
    """A history command cannot go on; the message says why."""


def open_backend(settings: Settings, *, must_exist: bool = True) -> Backend:
    """The storage of DATABASE_URL, if it outlives the process (the tools refuse memory://)."""
    database = settings.database
    backend = make_backend(database)
    if not backend.durable:
        raise CommandFailed(
            "the history tools need a database that outlives the process, not "
            f"{redact_url(settings.database_url)}"
        )
    if must_exist and database.path is not None and not Path(database.path).is_file():
        raise CommandFailed(
            f"no database at {database.path} (DATABASE_URL={redact_url(settings.database_url)})"
        )
    return backend


async def with_backend(
    settings: Settings,
    work: Callable[[Backend], Awaitable[int]],
    *,
    must_exist: bool = True,
) -> int:
    """Open the event store, run `work`, close it; errors become a message and exit code 1."""
    try:
        backend = open_backend(settings, must_exist=must_exist)
        if must_exist and backend.log_exists is not None and not await backend.log_exists():
            # Opening the store would create an empty one: a mistyped or dropped schema would
            # then pass for an intact log of no events.
            raise CommandFailed(f"no log in {backend.name}")
        await backend.store.open()
    except (CommandFailed, EventStoreError) as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 1
    try:
        return await work(backend)
    except (CommandFailed, EventStoreError) as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 1
    finally:
        await backend.store.close()


async def replay_command(
    backend: Backend,
    workflow_id: int,
    at_version: int | None,
    as_json: bool,
    out: TextIO = sys.stdout,
) -> int:
    """Print the workflow's events and states; say whether the read model agrees."""
    whole = await replay(backend.store, workflow_id)
    if not whole:
        raise CommandFailed(f"workflow {workflow_id} has no events in {backend.name}")
    if at_version is not None and at_version > len(whole):
        raise CommandFailed(missing_version(workflow_id, at_version, len(whole)))
    replayed = whole if at_version is None else whole[:at_version]
    final = replayed[-1].after
    agrees: bool | None = None
    mismatched: list[str] = []
    if len(replayed) == len(whole):  # the read model holds the latest state only
        live = backend.tables.storage()
        await live.open()
        try:
            row = (await live.load_rows(WORKFLOWS.kind, [workflow_id])).get(workflow_id)
        finally:
            await live.close()
        read_model: Workflow | None = WORKFLOWS.decode_state(row) if row else None
        mismatched = differences(final, read_model)
        agrees = not mismatched
    if as_json:
        document: dict[str, Any] = {
            "workflow_id": workflow_id,
            "events": [
                {
                    "position": item.recorded.position,
                    "version": item.recorded.version,
                    "type": item.recorded.type,
                    "recorded_at": item.recorded.recorded_at,
                    "data": item.event,
                    "metadata": item.recorded.metadata,
                    "schema_version": item.recorded.schema_version,
                    "hash": item.recorded.hash,
                }
                for item in replayed
            ],
            "state": workflow_out(final),
            "read_model_agrees": agrees,
        }
        out.write(_encoder.encode(document).decode() + "\n")
    else:
        for line in table(replayed):
            print(line, file=out)
        print(file=out)
        if agrees is None:
            print(
                f"state at version {at_version}: {final.state.value} (the read model "
                "holds the latest state, so it is not compared)",
                file=out,
            )
        elif agrees:
            print(f"folded state {final.state.value} agrees with the read model", file=out)
        else:
            print(f"folded state DIFFERS from the read model in: {', '.join(mismatched)}", file=out)
    return 0 if agrees is not False else 1


async def verify_command(
    backend: Backend,
    out: TextIO = sys.stdout,
    *,
    key: str = "",
    anchors_file: str | None = None,
    processes: int | None = None,
) -> int:
    """Check the whole log and hold it to its head checkpoints (and those of `anchors_file`),
    in `processes` processes (verify.py says the default); exit 1 and name the first bad
    position, or the truncation, on any violation."""
    # The checkpoints first: one a running server writes during the scan is then not missed.
    stored = await read_anchors(backend.anchors, anchors_file)
    progress = meter("verify", await backend.store.head_position())
    report = await verify(backend.store, AnchorCheck(stored, key), progress, processes=processes)
    progress.finish()
    anchor_lines = report.anchors.lines() if report.anchors is not None else []
    by = f", {report.processes} processes" if report.processes > 1 else ""
    print(
        f"checked {report.events} events in {report.streams} streams in {report.seconds:.2f} s "
        f"({report.rate:,.0f} events/s{by})",
        file=out,
    )
    if report.ok:
        print("the log is intact: positions, versions, payloads, hash chain, transitions", file=out)
        print(*anchor_lines, sep="\n", file=out)
        return 0
    print(*anchor_lines, sep="\n", file=out)
    if not report.violations:
        return 1
    first = report.violations[0]
    print(f"FIRST BAD POSITION: {first.position} ({first.stream_id}): {first.reason}", file=out)
    for violation in report.violations[1:]:
        print(
            f"  also at {violation.position} ({violation.stream_id}): {violation.reason}", file=out
        )
    if report.more_violations:
        print(f"  and {report.more_violations} more", file=out)
    return 1


async def export_command(backend: Backend, out: Any = None) -> int:
    """Write the log as JSON lines to stdout."""
    target = out or sys.stdout.buffer
    progress = meter("export", await backend.store.head_position())
    async for line in export_lines(backend.store, progress):
        target.write(line)
    target.flush()
    progress.finish()
    return 0


async def export_anchors_command(backend: Backend, out: Any = None) -> int:
    """Write every head checkpoint (every copy the backend keeps) as JSON lines, to keep
    elsewhere."""
    target = out or sys.stdout.buffer
    for line in exported_anchor_lines(await read_anchors(backend.anchors)):
        target.write(line)
    target.flush()
    return 0


async def import_command(backend: Backend, source: Any = None, *, key: str = "") -> int:
    """Read JSON lines from stdin into an empty log, rebuild the read models there, and
    checkpoint the new head."""
    progress = meter("import", None)
    count = await import_lines(backend.store, source or sys.stdin.buffer, progress)
    progress.finish()
    print(f"imported {count} events into {backend.name}", file=sys.stderr)
    await rebuild_command(backend, check_only=False)
    await checkpoint(backend.store, backend.anchors, key)
    return 0


async def import_original_command(
    settings: Settings, source: str, out: TextIO | None = None
) -> int:
    """Import the original orchestrator's database at `source` into DATABASE_URL's log.

    Everything is read and checked before the target is opened, so a refusal leaves it as it
    was (not even created); then the read models catch up with what was appended.
    """
    out = out or sys.stdout
    try:
        target = open_backend(settings, must_exist=False).name
        if os.path.abspath(source) == os.path.abspath(target) or (
            os.path.exists(source) and os.path.exists(target) and os.path.samefile(source, target)
        ):
            raise CommandFailed(
                f"{source} is the target database itself (DATABASE_URL); "
                "import it into a new database"
            )
        original = read_original(source)
        plans = plan_import(original)
    except (CommandFailed, ImportRefused) as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 1

    async def write(backend: Backend) -> int:
        try:
            progress = meter("import-original", len(plans))
            done = await write_import(backend.store, plans, progress)
            progress.finish()
        except ImportRefused as exc:
            raise CommandFailed(str(exc)) from None
        if done.workflows or done.tasks:
            live = backend.tables.storage()
            await live.open()
            try:
                await Projector(backend.store, live).start(follow=False)
            finally:
                await live.close()
            await checkpoint(backend.store, backend.anchors, settings.integrity_key)
        print(
            f"imported {done.workflows} workflows ({done.transitions} transitions) and "
            f"{done.tasks} tasks from {source}",
            file=out,
        )
        if done.skipped_workflows or done.skipped_tasks:
            print(
                f"skipped {done.skipped_workflows} workflows and {done.skipped_tasks} tasks "
                "imported from it before",
                file=out,
            )
        if original.orphan_transitions:
            print(
                f"left out {original.orphan_transitions} transitions of workflows the original "
                "no longer has",
                file=out,
            )
        return 0

    return await with_backend(settings, write, must_exist=False)


async def rebuild_command(
    backend: Backend, *, check_only: bool, processes: int | None = None
) -> int:
    """Rebuild the read models (or only compare a rebuild with the live ones), folding the log
    in `processes` processes (rebuild.py says the default)."""

    show, interval = display()
    if not check_only:
        done = await rebuilding.rebuild(
            backend.store, backend.tables, show, interval=interval, processes=processes
        )
        print(
            f"rebuilt the read models from {done.done} events ({done.rate:,.0f} events/s) "
            "and swapped them in",
            file=sys.stderr,
        )
        return 0
    done, found = await rebuilding.check(
        backend.store, backend.tables, show, interval=interval, processes=processes
    )
    if not found:
        print(f"the read models match a rebuild from {done.done} events", file=sys.stderr)
        return 0
    for difference in found:
        print(
            f"DIFFERENCE {difference.table} {difference.key}:\n  live:    {difference.live}"
            f"\n  rebuilt: {difference.rebuilt}"
        )
    print(f"{len(found)} differences between the live read models and a rebuild", file=sys.stderr)
    return 1
