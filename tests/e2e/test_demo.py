"""`orchestrator demo` against a real server, and against nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.conftest import StartServer, free_port

pytestmark = pytest.mark.e2e


def run_demo(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The demo command as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "demo", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_demo_runs_every_scene_green_against_a_fresh_server(
    start_server: StartServer,
) -> None:
    server = start_server(TASK_TIME_SCALE="0.01")

    finished = run_demo("--url", server.base_url)

    assert finished.returncode == 0, finished.stderr
    out = finished.stdout
    for heading in (
        "1. automatic run",
        "2. manual, step by step",
        "3. three concurrent workflows",
        "4. failure and retry",
        "5. stats",
    ):
        assert f"=== {heading} ===" in out
    assert "next -> workflow 2 is COMPLETE" in out
    assert "retry 1 -> INIT" in out
    assert "workflow 6 'demo-failure': COMPLETE, retries 1" in out
    assert "workflows: total 6, init 0, prepare 0, execute 0, validate 0, complete 6" in out
    assert out.rstrip().endswith("demo finished")
    with server.client() as client:
        assert client.get("/execution/stats").json()["workflows"]["complete"] == 6


def test_the_interactive_demo_lists_and_shows_stats_then_quits(start_server: StartServer) -> None:
    server = start_server(TASK_TIME_SCALE="0")
    with server.client() as client:
        assert client.post("/workflow/start", json={"name": "listed"}).status_code == 201

    finished = run_demo("--url", server.base_url, "--interactive", stdin="6\n7\nq\n")

    assert finished.returncode == 0, finished.stderr
    assert "listed" in finished.stdout
    assert "workflows: total 1" in finished.stdout


def test_the_demo_exits_non_zero_saying_how_to_start_the_server_when_none_answers() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    finished = run_demo("--url", url)

    assert finished.returncode == 1
    assert f"cannot reach the orchestrator at {url}" in finished.stderr
    assert "orchestrator serve" in finished.stderr
