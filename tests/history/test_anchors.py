"""`orchestrator verify` against head checkpoints: what the hash chain alone cannot see.

A server run with INTEGRITY_KEY leaves signed checkpoints in its database and its anchor file;
each test tampers with its own copy as an attacker would (sqlite3 with the triggers dropped, the
chain computed again with `chain.event_hash`, the anchor file rewritten) and runs the real CLI.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess, free_port
from tests.history.anchoring import (
    KEY,
    OTHER_KEY,
    anchor_file,
    copy_run,
    file_checkpoints,
    hash_at,
    recompute_chain,
    rewrite_checkpoints,
    run_cli_with,
    table_checkpoints,
    wait_for_checkpoint,
)
from tests.history.conftest import (
    RecordedRun,
    connect,
    event_rows,
    head_of,
    start_workflow,
    wait_until_caught_up,
    wait_until_finished_complete,
)

pytestmark = pytest.mark.e2e

INTACT = "the log is intact: positions, versions, payloads, hash chain, transitions"
REWRITE = (
    "a rewrite by someone who can write the database (and its anchor file, where it has one) "
    "would not be detected"
)


@dataclass(frozen=True)
class SignedRun:
    """A stopped server's database with a signed checkpoint after each of its workflows."""

    database: Path
    head: int
    #: The positions of the checkpoints, oldest first.
    positions: list[int]


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedRun]:
    """Three workflows, each followed by a checkpoint of the head (ANCHOR_INTERVAL_SECONDS=0.1)."""
    workdir = tmp_path_factory.mktemp("signed-run")
    overrides = {"INTEGRITY_KEY": KEY, "ANCHOR_INTERVAL_SECONDS": "0.1"}
    server = ServerProcess(workdir=workdir, port=free_port(), overrides=overrides)
    server.start()
    try:
        with server.client() as client:
            for name in ("first", "second", "third"):
                wait_until_finished_complete(client, start_workflow(client, name))
                head = wait_until_caught_up(client)["log_position"]
                wait_for_checkpoint(server.db_path, head)
    finally:
        server.stop()
    positions = [c["position"] for c in file_checkpoints(server.db_path)]
    yield SignedRun(server.db_path, head_of(server.db_path), positions)


@pytest.fixture
def signed(signed_run: SignedRun, tmp_path: Path) -> Path:
    """This test's own copy of the signed run's database and anchor file."""
    return copy_run(signed_run.database, tmp_path / "signed")


def lines_starting(stdout: str, prefix: str) -> list[str]:
    """The report's lines that begin with `prefix`."""
    return [line for line in stdout.splitlines() if line.startswith(prefix)]


def test_a_signed_log_verifies_and_the_report_says_what_was_checked(
    signed_run: SignedRun, signed: Path, processes: str
) -> None:
    count = len(signed_run.positions)

    verified = run_cli_with(signed, "verify", "--processes", processes, key=KEY)

    assert verified.returncode == 0, verified.stdout + verified.stderr
    lines = verified.stdout.splitlines()
    assert lines[1] == INTACT
    assert lines[2].startswith(
        f"anchors: {count} checkpoints ({count} in the database, {count} in "
        f"{anchor_file(signed)}), last at position {signed_run.head} ("
    )
    assert lines[2].endswith("), signed, signatures checked with INTEGRITY_KEY")
    assert table_checkpoints(signed) == file_checkpoints(signed)
    assert stat.S_IMODE(os.stat(anchor_file(signed_run.database)).st_mode) == 0o600
    unchecked = run_cli_with(signed, "verify")
    assert unchecked.returncode == 0
    assert unchecked.stdout.splitlines()[2].endswith(
        f", signed, but INTEGRITY_KEY is not set so not checked: {REWRITE}"
    )


@pytest.mark.parametrize("key", [KEY, None])
def test_deleting_the_last_events_is_reported_as_a_truncation(
    signed_run: SignedRun, signed: Path, key: str | None, processes: str
) -> None:
    last = file_checkpoints(signed)[-1]
    with connect(signed) as connection:
        connection.execute("DROP TRIGGER events_refuse_delete")
        connection.execute("DELETE FROM events WHERE position > ?", (signed_run.head - 3,))

    verified = run_cli_with(signed, "verify", "--processes", processes, key=key)

    assert verified.returncode == 1
    assert lines_starting(verified.stdout, "log truncated: ") == [
        f"log truncated: checkpoint at position {signed_run.head} ({last['at']}, in the "
        f"database and {anchor_file(signed)}) but the log ends at {signed_run.head - 3}"
    ]
    assert INTACT not in verified.stdout


@pytest.mark.parametrize("how", ["events table dropped", "database file replaced"])
@pytest.mark.parametrize("key", [KEY, None])
def test_a_log_written_again_from_another_export_is_caught_through_the_anchor_file(
    recorded_run: RecordedRun, signed_run: SignedRun, signed: Path, how: str, key: str | None
) -> None:
    other = run_cli_with(recorded_run.database, "export")
    assert other.returncode == 0, other.stderr
    if how == "events table dropped":
        with connect(signed) as connection:  # the table's checkpoints go too: only the file is left
            connection.execute("DROP TABLE events")
            connection.execute("DROP TABLE anchors")
    else:
        for name in (signed.name, f"{signed.name}-wal", f"{signed.name}-shm"):
            (signed.parent / name).unlink(missing_ok=True)
    imported = run_cli_with(signed, "import", stdin=other.stdout)  # without the key
    assert imported.returncode == 0, imported.stderr

    verified = run_cli_with(signed, "verify", key=key)

    assert verified.returncode == 1
    assert "hash chain broken" not in verified.stdout  # the new chain itself holds
    first = signed_run.positions[0]
    [line] = lines_starting(verified.stdout, "FIRST BAD POSITION: ")
    assert line.startswith(f"FIRST BAD POSITION: {first} (")
    assert line.endswith(
        f"(in {anchor_file(signed)}): an event in positions 1..{first} was changed, removed or "
        "replaced since"
    )


def test_a_payload_edited_with_the_chain_recomputed_is_caught_by_the_checkpoints(
    signed_run: SignedRun, signed: Path, processes: str
) -> None:
    recompute_chain(signed, 1, '"name":"first"', '"name":"forged"')
    assert "forged" in event_rows(signed)[0][4]
    first = signed_run.positions[0]

    # Not even the key is needed for this one.
    verified = run_cli_with(signed, "verify", "--processes", processes)

    assert verified.returncode == 1
    [line] = lines_starting(verified.stdout, "FIRST BAD POSITION: ")
    assert line.startswith(f"FIRST BAD POSITION: {first} (workflow-1): its hash is not the one ")
    assert "hash chain broken" not in verified.stdout


@pytest.mark.parametrize("forgery", ["unsigned", "old signatures kept"])
def test_an_edit_with_the_chain_and_the_checkpoints_rewritten_is_caught_with_the_key(
    signed_run: SignedRun, signed: Path, forgery: str
) -> None:
    recompute_chain(signed, 1, '"name":"first"', '"name":"forged"')
    rewritten = [
        {
            **checkpoint,
            "hash": hash_at(signed, checkpoint["position"]),
            **({"key_id": None, "mac": None} if forgery == "unsigned" else {}),
        }
        for checkpoint in file_checkpoints(signed)
    ]
    rewrite_checkpoints(signed, rewritten)

    verified = run_cli_with(signed, "verify", key=KEY)

    assert verified.returncode == 1
    assert "FIRST BAD POSITION" not in verified.stdout  # the chain and checkpoints agree...
    if forgery == "unsigned":  # ...but nothing signed them
        assert lines_starting(verified.stdout, "BAD CHECKPOINT") == [
            "BAD CHECKPOINTS: INTEGRITY_KEY is set but no signed checkpoint was found: they were "
            "removed, or no server has run with the key yet (one writes a checkpoint at every "
            "stop)"
        ]
    else:
        bad = lines_starting(verified.stdout, "BAD CHECKPOINT at position ")
        assert len(bad) == len(rewritten)
        assert all(
            line.endswith("its signature does not match: the checkpoint was altered or forged")
            for line in bad
        )


def test_without_the_key_an_edit_with_the_chain_and_the_checkpoints_rewritten_passes(
    recorded_run: RecordedRun, tmp_path: Path
) -> None:
    # The documented limit: unsigned checkpoints can be written again by whoever rewrites the log.
    database = copy_run(recorded_run.database, tmp_path / "unsigned")
    recompute_chain(database, 1, '"name":"automatic"', '"name":"forged"')
    rewrite_checkpoints(
        database,
        [{**c, "hash": hash_at(database, c["position"])} for c in file_checkpoints(database)],
    )

    verified = run_cli_with(database, "verify")

    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.splitlines()[2].endswith(f", unsigned: {REWRITE}; set INTEGRITY_KEY")


def test_checkpoints_signed_with_another_key_are_reported(
    signed_run: SignedRun, signed: Path
) -> None:
    verified = run_cli_with(signed, "verify", key=OTHER_KEY)

    assert verified.returncode == 1
    bad = lines_starting(verified.stdout, "BAD CHECKPOINT at position ")
    assert [int(line.split()[4]) for line in bad] == signed_run.positions
    assert all(": signed with another key (key id " in line for line in bad)
    assert "FIRST BAD POSITION" not in verified.stdout


def test_an_exported_copy_of_the_checkpoints_catches_what_was_wiped_on_the_machine(
    signed_run: SignedRun, signed: Path, tmp_path: Path
) -> None:
    exported = run_cli_with(signed, "export-anchors")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == anchor_file(signed).read_text(encoding="utf-8")
    offsite = tmp_path / "offsite.jsonl"
    offsite.write_text(exported.stdout, encoding="utf-8")
    with connect(signed) as connection:
        connection.execute("DROP TRIGGER events_refuse_delete")
        connection.execute("DELETE FROM events WHERE position > 5")
        connection.execute("DROP TABLE anchors")
    anchor_file(signed).unlink()

    alone = run_cli_with(signed, "verify")
    held = run_cli_with(signed, "verify", "--anchors", str(offsite))

    assert alone.returncode == 0  # nothing left on the machine remembers the head...
    assert "anchors: no checkpoints found: the last events deleted" in alone.stdout
    assert held.returncode == 1  # ...but the copy kept elsewhere does
    [line] = lines_starting(held.stdout, "log truncated: ")
    assert line.endswith(f", in {offsite}) but the log ends at 5")
    assert run_cli_with(signed, "verify", key=KEY).returncode == 1  # no signed checkpoint


def test_an_anchor_file_that_cannot_be_read_is_one_line(signed: Path) -> None:
    verified = run_cli_with(signed, "verify", "--anchors", "nowhere.jsonl")

    assert verified.returncode == 1
    assert verified.stderr == (
        "orchestrator: cannot read the anchor file nowhere.jsonl: No such file or directory\n"
    )


def test_the_database_refuses_to_change_or_remove_a_checkpoint(signed: Path) -> None:
    with connect(signed) as connection:
        for statement in ("UPDATE anchors SET hash = 'x'", "DELETE FROM anchors"):
            with pytest.raises(Exception, match="anchors are append-only"):
                connection.execute(statement)
