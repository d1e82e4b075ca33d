"""Helpers for the head-checkpoint tests: runs of the CLI with or without INTEGRITY_KEY, readers
of the anchor table and file, and an attacker's tools (sqlite3 with the triggers dropped, and
`chain.event_hash` to compute a chain again).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from orchestrator.eventstore.chain import GENESIS, event_hash
from tests.e2e.conftest import server_environment
from tests.history.conftest import CLI_DEADLINE, DATABASE_NAME, connect, event_rows, wait_for

#: The INTEGRITY_KEY of the signed server runs.
KEY = "correct horse battery staple"
OTHER_KEY = "another key, at least sixteen"

Json = dict[str, Any]


def run_cli_with(
    database: Path, *args: str, key: str | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m orchestrator <args>` on `database`, with INTEGRITY_KEY set to `key` or unset."""
    environment = server_environment({"DATABASE_URL": f"sqlite:///{database}"})
    environment.pop("INTEGRITY_KEY", None)
    if key is not None:
        environment["INTEGRITY_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=database.parent,  # no stray .env is read
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=CLI_DEADLINE,
        check=False,
    )


def anchor_file(database: Path) -> Path:
    """The anchor file beside `database`."""
    return database.with_name(database.name + ".anchors")


def file_checkpoints(database: Path) -> list[Json]:
    """The checkpoints of the anchor file, in the order written ([] when there is no file)."""
    path = anchor_file(database)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def wait_for_checkpoint(database: Path, head: int) -> None:
    """Return once the anchor file holds a checkpoint at position `head`."""
    wait_for(
        lambda: [c["position"] for c in file_checkpoints(database)],
        lambda positions: head in positions,
        what=f"a checkpoint at position {head}",
    )


def table_checkpoints(database: Path) -> list[Json]:
    """The checkpoints of the database's anchors table, in the order written."""
    with connect(database) as connection:
        rows = connection.execute(
            "SELECT position, hash, at, key_id, mac FROM anchors ORDER BY seq"
        ).fetchall()
    names = ("position", "hash", "at", "key_id", "mac")
    return [dict(zip(names, row, strict=True)) for row in rows]


def projection_checkpoint(database: Path) -> int:
    """The position the live read models have applied."""
    with connect(database) as connection:
        row = connection.execute(
            "SELECT position FROM projection_checkpoints WHERE name = 'read_models'"
        ).fetchone()
    return int(row[0]) if row else 0


def copy_run(source: Path, target_dir: Path) -> Path:
    """A copy of a stopped server's database and its anchor file in `target_dir`."""
    target_dir.mkdir(parents=True)
    target = target_dir / DATABASE_NAME
    shutil.copyfile(source, target)
    shutil.copyfile(anchor_file(source), anchor_file(target))
    return target


def recompute_chain(database: Path, edit_position: int, old: str, new: str) -> None:
    """Replace `old` by `new` in one payload, then write every hash from there on again."""
    edited = next(row[4] for row in event_rows(database) if row[0] == edit_position)
    with connect(database) as connection:
        connection.execute("DROP TRIGGER events_refuse_update")
        connection.execute(  # as text: the file may hold it packed (sqlite_codec.py)
            "UPDATE events SET data = ? WHERE position = ?",
            (edited.replace(old, new), edit_position),
        )
    rows = event_rows(database)
    previous = GENESIS
    hashes: list[tuple[str, int]] = []
    for row in rows:
        fields = dict(
            zip(
                ("position", "stream_id", "version", "type", "data", "metadata", "recorded_at"),
                row[:7],
                strict=True,
            ),
            schema_version=row[7],
        )
        previous = event_hash(previous, **fields) if row[0] >= edit_position else row[8]
        hashes.append((previous, row[0]))
    with connect(database) as connection:
        connection.executemany("UPDATE events SET hash = ? WHERE position = ?", hashes)


def rewrite_checkpoints(database: Path, checkpoints: list[Json]) -> None:
    """Replace every checkpoint, in the table and in the anchor file, by `checkpoints`."""
    with connect(database) as connection:
        connection.execute("DROP TRIGGER anchors_refuse_delete")
        connection.execute("DELETE FROM anchors")
        connection.executemany(
            "INSERT INTO anchors (position, hash, at, key_id, mac) VALUES (?, ?, ?, ?, ?)",
            [(c["position"], c["hash"], c["at"], c["key_id"], c["mac"]) for c in checkpoints],
        )
    anchor_file(database).write_text(
        "".join(json.dumps(c, separators=(",", ":")) + "\n" for c in checkpoints),
        encoding="utf-8",
    )


def hash_at(database: Path, position: int) -> str:
    """The stored chain hash of the event at `position`."""
    return str(next(row[8] for row in event_rows(database) if row[0] == position))
