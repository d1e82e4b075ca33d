"""Helpers for the end-to-end tests of the machine under the server (test_database_file.py,
test_start_failures.py): a workflow that waits, a start that must fail, a small file system."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import HEALTH_DEADLINE, free_port, serve_command, server_environment


def manual(client: httpx.Client, name: str) -> httpx.Response:
    """POST /workflow/start for a workflow that waits for `next` (one event, nothing after)."""
    return client.post("/workflow/start", json={"name": name, "auto_start": False})


def serve_once(
    workdir: Path, settings: dict[str, str], *prefix: str
) -> subprocess.CompletedProcess[str]:
    """Run `orchestrator serve` to its end (for starts that must fail), optionally as another
    user through `prefix`."""
    return subprocess.run(
        [*prefix, *serve_command(free_port())],
        cwd=workdir,
        env=server_environment({"API_HOST": "127.0.0.1", "LOG_FILE": "", **settings}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=HEALTH_DEADLINE,
        check=False,
    )


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (skips the test if mounting is not permitted)."""
    where.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("no mount command here, so no small file system to fill or make read-only")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], capture_output=True, check=False)
