"""`orchestrator serve` that cannot start says why in one line and exits 2, through the real
entry point: a read-only file system (a tmpfs remounted read-only, which refuses even root), a
read-only folder or file (met by an unprivileged user through setpriv: root ignores modes), and
any other failure of the start inside uvicorn's lifespan. Skipped, saying why, where mounting or
setpriv is not permitted.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.machine import serve_once, tmpfs

pytestmark = pytest.mark.e2e

NOBODY = 65534
SETPRIV = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def assert_refused_with_one_line(finished: subprocess.CompletedProcess[str], line: str) -> None:
    """Exit code 2, nothing on stdout, and exactly `line` on stderr."""
    assert (finished.returncode, finished.stdout, finished.stderr) == (2, "", f"{line}\n")


def read_only_line(db: Path, reason: str) -> str:
    """The one line `serve` prints for a database it cannot write."""
    return (
        f"orchestrator: cannot open the database {db}: {reason} (the server writes the file and, "
        f"beside it, {db.name}-wal and {db.name}-shm; make {db.parent} writable or set "
        "DATABASE_URL to a writable place)"
    )


def make_database(path: Path) -> None:
    """A database file, as a server that ran before leaves it."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.commit()


@pytest.mark.parametrize("exists", [True, False], ids=["existing file", "missing file"])
def test_a_read_only_file_system_stops_the_start_with_one_line(
    tmp_path: Path, exists: bool
) -> None:
    with tmpfs(tmp_path / "ro", "1M") as where:
        db = where / "wf.db"
        if exists:
            make_database(db)
        remounted = subprocess.run(
            ["mount", "-o", "remount,ro", str(where)], capture_output=True, text=True, check=False
        )
        if remounted.returncode != 0:
            pytest.skip(f"cannot remount a tmpfs read-only here: {remounted.stderr.strip()}")

        finished = serve_once(tmp_path, {"DATABASE_URL": f"sqlite:///{db}"})

    assert_refused_with_one_line(finished, read_only_line(db, "the file system is read-only"))


@pytest.fixture
def unprivileged_dir() -> Iterator[Path]:
    """A folder owned by `nobody` that `nobody` can reach (pytest's own tmp_path is private)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the server as an unprivileged user")
    outer = Path(tempfile.mkdtemp(prefix="orchestrator-ro-", dir="/tmp"))
    try:
        outer.chmod(0o755)
        inner = outer / "data"
        inner.mkdir()
        os.chown(inner, NOBODY, NOBODY)
        yield inner
    finally:
        for path in (outer, *outer.rglob("*")):
            with contextlib.suppress(OSError):
                path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(outer, ignore_errors=True)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("folder read-only, file there", "the folder is read-only"),
        ("folder read-only, no file yet", "the folder is read-only"),
        ("file read-only", "the file is read-only"),
    ],
)
def test_a_read_only_folder_or_file_stops_the_start_with_one_line(
    unprivileged_dir: Path, case: str, reason: str
) -> None:
    db = unprivileged_dir / "wf.db"
    if case != "folder read-only, no file yet":
        make_database(db)
        os.chown(db, NOBODY, NOBODY)
    if case == "file read-only":
        db.chmod(0o444)
    else:
        unprivileged_dir.chmod(0o555)

    finished = serve_once(unprivileged_dir, {"DATABASE_URL": f"sqlite:///{db}"}, *SETPRIV)

    assert_refused_with_one_line(finished, read_only_line(db, reason))


def test_any_other_failed_start_ends_with_one_line_not_a_traceback(tmp_path: Path) -> None:
    db = tmp_path / "wf.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        # The log opens; the read models' table is not what they expect, so the start fails
        # inside uvicorn's lifespan, past every check made before it.
        conn.execute("CREATE TABLE projection_checkpoints (x)")
        conn.commit()

    finished = serve_once(tmp_path, {"DATABASE_URL": f"sqlite:///{db}"})

    assert finished.returncode == 2, finished.stderr
    assert "Traceback" not in finished.stderr + finished.stdout
    last = finished.stderr.strip().splitlines()[-1]
    assert last.startswith(f"orchestrator: cannot open the database {db}: "), finished.stderr
