"""What `orchestrator serve` claims at start-up (its port, then its SQLite file), the CLI's
argument errors, and the settings that shape its logs, all through the real entry point."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    HEALTH_DEADLINE,
    RunServe,
    ServerProcess,
    StartServer,
    free_port,
    serve_command,
    server_environment,
    wait_for,
)

pytestmark = pytest.mark.e2e


def orchestrator(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The console script's entry point, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=HEALTH_DEADLINE,
        check=False,
        env=server_environment(env or {}),
        stdin=subprocess.DEVNULL,
    )


def test_a_second_server_on_the_same_file_stops_at_once_naming_the_file(
    server: ServerProcess,
) -> None:
    other = subprocess.run(
        # A port nobody listens on: the neighbour of the first one may be any process's (an
        # outgoing connection's local port, say), and the refusal would then name the port.
        serve_command(free_port()),
        cwd=server.workdir,
        env=server_environment(server.settings),
        capture_output=True,
        text=True,
        timeout=HEALTH_DEADLINE,
        check=False,
        stdin=subprocess.DEVNULL,
    )

    assert other.returncode == 2, other.stdout + other.stderr
    assert other.stderr.strip() == (
        f"orchestrator: another orchestrator server is already serving {server.db_path}; "
        "stop it first (one server per SQLite file: several processes need PostgreSQL)"
    )
    with server.client() as client:  # the first one is untouched
        assert client.get("/health").status_code == 200


def test_the_lock_goes_with_the_process_so_a_restart_after_a_crash_serves_again(
    server: ServerProcess,
) -> None:
    server.kill()
    server.start()  # would fail with "already serving" if the lock outlived the process

    with server.client() as client:
        assert client.get("/health").status_code == 200


def test_a_busy_port_fails_fast_without_touching_the_database(
    run_serve: RunServe, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        finished = subprocess.run(
            [sys.executable, "-m", "orchestrator", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=server_environment(
                {"DATABASE_URL": f"sqlite:///{tmp_path / 'wf.db'}", "API_HOST": "127.0.0.1"}
            ),
            capture_output=True,
            text=True,
            timeout=HEALTH_DEADLINE,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    assert finished.returncode == 2
    assert finished.stderr.strip() == (
        f"orchestrator: cannot listen on 127.0.0.1:{port}: it is in use "
        "(set API_PORT or --port to another port)"
    )
    assert not (tmp_path / "wf.db").exists()


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("replay", "abc"), "argument workflow_id: must be a positive integer, got 'abc'"),
        (("replay", "1", "--at-version", "x"), "argument --at-version: must be a positive"),
        (("serve", "--port", "99999"), "argument --port: must be a port number 1..65535"),
    ],
)
def test_argument_errors_name_the_argument(args: tuple[str, ...], complaint: str) -> None:
    finished = orchestrator(*args)

    assert finished.returncode == 2
    assert complaint in finished.stderr
    assert "_positive_int" not in finished.stderr


def test_replay_past_the_end_says_what_the_http_api_says(server: ServerProcess) -> None:
    with server.client() as client:
        workflow_id = client.post("/workflow/start", json={"name": "short"}).json()["workflow_id"]
        wait_for(
            lambda: client.get(f"/workflow/{workflow_id}").json()["task_results"],
            lambda results: "COMPLETE" in results,
            what="the workflow to finish",
        )
        http = client.get(f"/workflow/{workflow_id}", params={"at_version": 99})

    finished = orchestrator("replay", str(workflow_id), "--at-version", "99", env=server.settings)

    assert http.status_code == 404
    assert finished.returncode == 1
    assert finished.stderr.strip() == f"orchestrator: {http.json()['detail']}"


def test_access_log_setting_logs_one_line_per_request(start_server: StartServer) -> None:
    server = start_server(ACCESS_LOG="true")
    with server.client() as client:
        client.get("/execution/stats")

    wait_for(
        server.output,
        lambda text: '"GET /execution/stats HTTP/1.1" 200' in text,
        what="the access log line",
    )


def test_without_the_access_log_requests_are_not_logged(server: ServerProcess) -> None:
    with server.client() as client:
        client.get("/execution/stats")
        client.get("/health")

    assert "GET /execution/stats" not in server.output()


def test_an_empty_log_file_setting_writes_no_log_file(start_server: StartServer) -> None:
    server = start_server(LOG_FILE="")
    with server.client() as client:
        client.post("/workflow/start", json={"name": "unlogged"})

    assert "INIT -> PREPARE" in wait_for(
        server.output, lambda text: "INIT -> PREPARE" in text, what="the console log"
    )
    assert not server.log_path.exists()
    assert [p.name for p in server.workdir.iterdir() if p.suffix == ".log"] == []


def test_the_database_file_is_created_readable_by_its_owner_only(server: ServerProcess) -> None:
    mode = os.stat(server.db_path).st_mode & 0o777

    assert mode & 0o077 == 0, oct(mode)
