"""The tools show their progress through their real entry point: plain lines when stderr is not
a terminal, one bar redrawn in place (with rate and ETA) when it is."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import server_environment
from tests.history.conftest import CLI_DEADLINE, RecordedRun, run_cli


def test_verify_export_and_rebuild_print_progress_lines_when_not_on_a_terminal(
    database: Path, recorded_run: RecordedRun
) -> None:
    head = recorded_run.head

    verified = run_cli(database, "verify")
    exported = run_cli(database, "export")
    rebuilt = run_cli(database, "rebuild-projections")

    assert verified.returncode == exported.returncode == rebuilt.returncode == 0
    assert f"verify: {head:,}/{head:,} events, " in verified.stderr
    assert f"export: {head:,}/{head:,} events, " in exported.stderr
    assert len(exported.stdout.splitlines()) == head  # stdout carries only the events
    assert f"rebuild: {head:,}/{head:,} events, " in rebuilt.stderr
    assert "\r" not in verified.stderr + exported.stderr + rebuilt.stderr


def test_import_counts_what_it_read(
    recorded_run: RecordedRun, database: Path, tmp_path: Path
) -> None:
    exported = run_cli(database, "export")
    target = tmp_path / "imported" / "wf.db"
    target.parent.mkdir()

    imported = run_cli(target, "import", stdin=exported.stdout)

    assert imported.returncode == 0, imported.stderr
    assert f"import: {recorded_run.head:,} events, " in imported.stderr


def run_on_a_terminal(database: Path, *args: str) -> tuple[int, str]:
    """`orchestrator <args>` with stderr (and stdout) on a pseudo-terminal, as a person runs it."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", *args],
            cwd=database.parent,
            env=server_environment({"DATABASE_URL": f"sqlite:///{database}"}),
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower,
        )
        os.close(follower)
        output = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            output += chunk
        code = process.wait(timeout=CLI_DEADLINE)
    finally:
        os.close(leader)
    return code, output.decode("utf-8", errors="replace")


@pytest.mark.parametrize("command", ["verify", "rebuild-projections"])
def test_on_a_terminal_the_tools_draw_a_bar_with_rate(
    database: Path, recorded_run: RecordedRun, command: str
) -> None:
    code, shown = run_on_a_terminal(database, command)

    head = recorded_run.head
    what = "verify" if command == "verify" else "rebuild"
    assert code == 0, shown
    assert f"\r{what} [##############################] 100% {head:,}/{head:,} " in shown
    assert "/s" in shown
