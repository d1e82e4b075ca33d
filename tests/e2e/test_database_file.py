"""The database file under a running server: deleted or replaced while it runs, or on a disk
that fills up. Each is answered in words: 503 `store_unavailable` (with Retry-After) and a
degraded /health while writes cannot land where the next start will look, and nothing written
into the file that is there now. The full disk is a real one: a 1 MB tmpfs (skipped, saying
why, where mounting is not permitted).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess, StartServer
from tests.e2e.machine import manual, serve_once, tmpfs

pytestmark = pytest.mark.e2e

HEALTH_FIELDS = {
    "status",
    "version",
    "database",
    "log_position",
    "projection_position",
    "projection_lag",
}


def events_in(path: Path) -> int:
    """Rows of the events table in the database file at `path`, read from a copy of that file
    alone, so no -wal beside it is taken for its own."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "copy.db"
        shutil.copyfile(path, copy)
        with contextlib.closing(sqlite3.connect(copy)) as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM events").fetchone()
    assert isinstance(count, int)
    return count


def assert_refuses_writes_saying(server: ServerProcess, start_of_reason: str) -> dict[str, Any]:
    """The next command is a 503 naming the cause, and /health is degraded with it; the body."""
    with server.client() as client:
        refused = manual(client, "after")
        health = client.get("/health")

    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == "5"
    body = refused.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == "store_unavailable"
    assert body["detail"].startswith(start_of_reason)
    assert health.status_code == 503, health.text
    state: dict[str, Any] = health.json()
    assert set(state) == {*HEALTH_FIELDS, "reason"}
    assert state["status"] == "degraded"
    assert state["reason"] == body["detail"]
    return state


def test_a_database_deleted_under_the_server_refuses_writes_and_the_restart(
    server: ServerProcess,
) -> None:
    with server.client() as client:
        assert manual(client, "before").status_code == 201
    os.remove(server.db_path)

    state = assert_refuses_writes_saying(
        server,
        f"the database file {server.db_path} was deleted or replaced while the server ran; "
        "restart it once the right file is back at that path",
    )
    assert not server.db_path.exists()  # nothing wrote a new file there either
    server.stop()
    again = serve_once(server.workdir, server.settings)

    # Starting afresh would hand out workflow id 1 again: refused until someone decides.
    assert again.returncode == 2
    assert again.stderr.startswith(
        f"orchestrator: the database file {server.db_path} is missing or empty, but "
    )
    assert "starting now would lose those events and reuse their ids" in again.stderr
    assert again.stderr.count("\n") == 1
    assert "-wal.orphaned-" in state["reason"]


def test_a_deleted_database_comes_back_whole_from_the_copy_the_reason_names(
    server: ServerProcess,
) -> None:
    with server.client() as client:
        first = manual(client, "first").json()["workflow_id"]
        second = manual(client, "second").json()["workflow_id"]
    os.remove(server.db_path)
    reason = assert_refuses_writes_saying(server, "the database file ")["reason"]
    found = re.search(r"copied from (/proc/\d+/fd/\d+)", reason)
    assert found is not None, reason
    shutil.copyfile(found.group(1), server.workdir / "rescued.db")
    server.stop()

    (log,) = server.workdir.glob("wf.db-wal.orphaned-*")
    log.rename(server.workdir / "wf.db-wal")
    for shm in server.workdir.glob("wf.db-shm.orphaned-*"):
        shm.unlink()
    (server.workdir / "rescued.db").rename(server.db_path)
    server.start()

    with server.client() as client:
        assert client.get(f"/workflow/{first}").json()["name"] == "first"
        assert client.get(f"/workflow/{second}").json()["name"] == "second"
        assert manual(client, "third").json()["workflow_id"] == second + 1  # no id reused


def test_a_database_replaced_under_the_server_gets_no_new_rows(server: ServerProcess) -> None:
    with server.client() as client:
        assert manual(client, "before").status_code == 201
    replacement = server.workdir / "replacement.db"
    with (
        contextlib.closing(sqlite3.connect(server.db_path)) as live,
        contextlib.closing(sqlite3.connect(replacement)) as copy,
    ):
        live.backup(copy)  # a consistent copy, as a restore from a backup would bring
        copy.execute("PRAGMA journal_mode = DELETE")
    rows = events_in(replacement)
    os.replace(replacement, server.db_path)

    assert_refuses_writes_saying(
        server, f"the database file {server.db_path} was deleted or replaced while the server ran"
    )
    with server.client() as client:
        assert manual(client, "refused again").status_code == 503
    server.stop()

    assert events_in(server.db_path) == rows
    assert not (server.workdir / "wf.db-wal").exists()  # the old log was set aside, not applied
    server.start()  # a restart serves the replacement as it is
    with server.client() as client:
        assert client.get("/health").json()["log_position"] == rows


# A full disk -------------------------------------------------------------------------------------


def fill(path: Path) -> None:
    """Write `path` until the file system has no space left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (b"\0" * 65536, b"\0" * 4096, b"\0"):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, chunk)
    finally:
        os.close(fd)
    assert os.statvfs(path).f_bavail == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB file system, unmounted after the test (its server is stopped before that)."""
    with tmpfs(tmp_path / "disk", "1M") as where:
        yield where


def test_a_full_disk_degrades_health_and_refuses_commands_until_space_is_freed(
    small_disk: Path, start_server: StartServer
) -> None:
    server = start_server(DATABASE_URL=f"sqlite:///{small_disk / 'wf.db'}")
    try:
        with server.client() as client:
            assert manual(client, "before").status_code == 201
            fill(small_disk / "filler")

            answers = [manual(client, f"on a full disk {n}") for n in range(20)]
            codes = [a.status_code for a in answers]
            assert set(codes) <= {201, 503} and 503 in codes, codes
            refused = answers[codes.index(503)]
            health = client.get("/health")
            still = manual(client, "still full")

            assert refused.json()["error"] == "store_unavailable"
            assert "database or disk is full" in refused.json()["detail"]
            assert refused.headers["retry-after"] == "5"
            assert health.status_code == 503
            assert health.json()["status"] == "degraded"
            assert health.json()["reason"].startswith(
                f"the last write to {small_disk / 'wf.db'} failed: database or disk is full"
            )
            assert still.status_code == 503

            (small_disk / "filler").unlink()
            # /health tries a small write by itself, at most once every 5 s.
            deadline = time.monotonic() + 15
            while (recovered := client.get("/health")).status_code != 200:
                assert time.monotonic() < deadline, recovered.text
                time.sleep(0.5)
            after = manual(client, "after")

            assert recovered.status_code == 200, recovered.text
            assert recovered.json()["status"] == "healthy"
            assert "reason" not in recovered.json()
            assert after.status_code == 201
    finally:
        server.stop()  # before the file system goes
