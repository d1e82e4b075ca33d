"""A client written for the original FastAPI service runs unmodified against a real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

CLIENT = Path(__file__).with_name("original_client.py")


def test_the_original_services_client_runs_end_to_end_unmodified(server: ServerProcess) -> None:
    finished = subprocess.run(
        [sys.executable, str(CLIENT), server.base_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert finished.returncode == 0, finished.stdout + finished.stderr
    lines = finished.stdout.splitlines()
    assert lines[-1] == "ALL CHECKS PASSED"
    assert not [line for line in lines if line.startswith("FAILED")]
    # Every state's result was read through the worker's wrapper.
    for state in ("INIT", "PREPARE", "EXECUTE", "VALIDATE", "COMPLETE"):
        assert f"ok: {state} result reports success" in lines
