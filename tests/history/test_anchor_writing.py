"""Who writes head checkpoints, and what a graceful stop leaves behind.

A running server checkpoints its head every ANCHOR_INTERVAL_SECONDS while the head moves and once
more when it stops, in the database's `anchors` table and in the anchor file beside it (mode
0600). A graceful stop also lets the read models apply everything the log holds, so a restart
has no lag to make up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path

import msgspec
import pytest

from orchestrator.eventstore.anchor_store import InMemoryAnchors
from orchestrator.eventstore.anchoring import Anchorer
from orchestrator.eventstore.anchors import make_anchor, signature_problem
from orchestrator.eventstore.base import NewEvent
from orchestrator.eventstore.errors import StoreUnavailable
from orchestrator.eventstore.memory import InMemoryEventStore
from orchestrator.eventstore.sqlite import SQLiteEventStore
from orchestrator.runtime import build_runtime
from orchestrator.settings import Settings
from tests.history.anchoring import (
    KEY,
    anchor_file,
    file_checkpoints,
    projection_checkpoint,
    run_cli_with,
    table_checkpoints,
    wait_for_checkpoint,
)
from tests.history.conftest import (
    RecordedRun,
    ServeDatabase,
    connect,
    database_path,
    head_of,
    start_workflow,
    wait_until_caught_up,
    wait_until_finished_complete,
)
from tests.history.test_import_original import SCHEMA as ORIGINAL_SCHEMA
from tests.history.test_import_original import insert, workflow


@pytest.mark.e2e
def test_a_running_server_checkpoints_its_head_each_interval_while_it_moves(
    serve: ServeDatabase, tmp_path: Path
) -> None:
    server = serve(
        database_path(tmp_path, "periodic"), INTEGRITY_KEY=KEY, ANCHOR_INTERVAL_SECONDS="0.1"
    )
    heads: list[int] = []
    with server.client() as client:
        for name in ("first", "second"):
            wait_until_finished_complete(client, start_workflow(client, name))
            head = wait_until_caught_up(client)["log_position"]
            heads.append(head)
            # The server is still running: this is the timer's checkpoint.
            wait_for_checkpoint(server.db_path, head)
        written = file_checkpoints(server.db_path)

    positions = [c["position"] for c in written]
    # Only when the head moved: never twice at one position (a tick may also land while a
    # workflow is still appending, so a head between the two is no error).
    assert positions == sorted(set(positions))
    assert set(heads) <= set(positions)
    assert table_checkpoints(server.db_path) == written
    assert all(c["key_id"] and c["mac"] for c in written)
    assert stat.S_IMODE(os.stat(anchor_file(server.db_path)).st_mode) == 0o600


@pytest.mark.e2e
def test_a_server_checkpoints_its_head_when_it_stops(serve: ServeDatabase, tmp_path: Path) -> None:
    server = serve(database_path(tmp_path, "at-stop"), ANCHOR_INTERVAL_SECONDS="3600")
    with server.client() as client:
        wait_until_finished_complete(client, start_workflow(client, "only"))
        wait_until_caught_up(client)
    assert file_checkpoints(server.db_path) == []

    server.stop()

    [checkpoint] = file_checkpoints(server.db_path)
    assert checkpoint["position"] == head_of(server.db_path)
    assert checkpoint["key_id"] is None and checkpoint["mac"] is None  # no INTEGRITY_KEY
    assert table_checkpoints(server.db_path) == [checkpoint]


@pytest.mark.e2e
def test_sigterm_under_load_leaves_the_read_models_caught_up_and_the_head_checkpointed(
    serve: ServeDatabase, tmp_path: Path
) -> None:
    server = serve(database_path(tmp_path, "load"), ANCHOR_INTERVAL_SECONDS="3600")

    async def load() -> None:
        async with server.async_client() as client:
            await asyncio.gather(
                *(client.post("/workflow/start", json={"name": f"w{i}"}) for i in range(100))
            )
        # Events the server's projector has not seen yet when the signal comes: appended by
        # another process, they are found by the projector's next look at the file.
        store = SQLiteEventStore(str(server.db_path))
        await store.open()
        try:
            await store.append("note-1", 0, many_events(30_000))
        finally:
            await store.close()

    asyncio.run(load())  # meanwhile the 100 automatic workflows run by themselves
    server.stop()

    head = head_of(server.db_path)
    assert projection_checkpoint(server.db_path) == head
    assert file_checkpoints(server.db_path)[-1]["position"] == head


def many_events(count: int) -> list[NewEvent]:
    """`count` small events of a stream no read model follows (only the checkpoint moves)."""
    return [NewEvent(type="Noted", data=b'{"n":%d}' % n) for n in range(count)]


@pytest.mark.anyio
async def test_a_graceful_stop_applies_what_the_log_holds_before_it_returns(
    tmp_path: Path,
) -> None:
    database = tmp_path / "wf.db"
    runtime = build_runtime(
        Settings(database_url=f"sqlite:///{database}", anchor_interval_seconds=3600)
    )
    await runtime.start()
    try:
        appended = await runtime.store.append("note-1", 0, many_events(30_000))
    finally:
        await runtime.stop()  # at once: the projector has applied at most a batch or two

    assert projection_checkpoint(database) == appended.position == head_of(database)
    assert [c["position"] for c in file_checkpoints(database)] == [appended.position]


@pytest.mark.anyio
async def test_the_memory_backend_keeps_its_checkpoints_in_memory() -> None:
    runtime = build_runtime(
        Settings(database_url="memory://", integrity_key=KEY, anchor_interval_seconds=3600)
    )
    await runtime.start()
    try:
        appended = await runtime.store.append("note-1", 0, many_events(10))
    finally:
        await runtime.stop()

    stored = await runtime.anchorer.anchors.read()
    [(where, [checkpoint])] = stored.sources
    assert where == "memory"
    assert checkpoint.position == appended.position == runtime.projector.position
    assert signature_problem(checkpoint, KEY) is None


def test_a_checkpoint_is_signed_over_its_position_hash_and_time() -> None:
    signed = make_anchor(7, "ab" * 32, KEY)

    assert signature_problem(signed, KEY) is None
    for altered in (
        msgspec.structs.replace(signed, position=8),
        msgspec.structs.replace(signed, hash="cd" * 32),
        msgspec.structs.replace(signed, at="2030-01-01T00:00:00Z"),
    ):
        assert signature_problem(altered, KEY) == (
            "its signature does not match: the checkpoint was altered or forged"
        )
    assert signature_problem(make_anchor(7, "ab" * 32, ""), "") is None  # no key: not checked


@pytest.mark.e2e
def test_import_and_import_original_checkpoint_the_head_they_wrote(
    recorded_run: RecordedRun, tmp_path: Path
) -> None:
    exported = run_cli_with(recorded_run.database, "export")
    copy = database_path(tmp_path, "copy")
    original = tmp_path / "original.db"
    with connect(original) as connection:
        connection.executescript(ORIGINAL_SCHEMA)
        insert(connection, "workflows", workflow(1, "old", "INIT", started_at="2024-03-01 09:00"))
    converted = database_path(tmp_path, "converted")

    assert run_cli_with(copy, "import", stdin=exported.stdout, key=KEY).returncode == 0
    assert run_cli_with(converted, "import-original", str(original), key=KEY).returncode == 0

    for database in (copy, converted):
        [checkpoint] = file_checkpoints(database)
        assert checkpoint["position"] == head_of(database)
        assert checkpoint["mac"] is not None
        assert table_checkpoints(database) == [checkpoint]
        assert run_cli_with(database, "verify", key=KEY).returncode == 0


class GoneStore(InMemoryEventStore):
    """A log whose database file was deleted: every read fails the same way."""

    async def head_position(self) -> int:
        raise StoreUnavailable("unable to open database file")


@pytest.mark.anyio
async def test_a_store_gone_for_good_is_one_warning_line_not_a_traceback_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    anchorer = Anchorer(GoneStore(), InMemoryAnchors(), key=KEY, interval=0.01)
    caplog.set_level(logging.DEBUG, logger="orchestrator.eventstore.anchoring")

    await anchorer.start()
    await asyncio.sleep(0.1)  # about ten intervals
    await anchorer.stop()

    records = [r for r in caplog.records if r.name == "orchestrator.eventstore.anchoring"]
    assert [(r.levelname, r.exc_info) for r in records] == [("WARNING", None)]
    assert records[0].getMessage() == (
        "could not write a checkpoint of the log's head: "
        "StoreUnavailable: unable to open database file"
    )
