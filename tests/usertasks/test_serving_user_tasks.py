"""`orchestrator serve` with the user's task modules, through its real entry point: TASKS_MODULES
and `--tasks` load them (from the working directory), a module that cannot be loaded stops the
start with one line, and a workflow runs the user's code end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import (
    HEALTH_DEADLINE,
    StartServer,
    free_port,
    serve_command,
    server_environment,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]


def test_a_server_with_tasks_modules_runs_the_users_steps(start_server: StartServer) -> None:
    server = start_server(TASKS_MODULES="tests.usertasks.sample_tasks", PYTHONPATH=str(ROOT))

    with httpx.Client(base_url=server.base_url) as client:
        started = client.post("/workflow/start", json={"name": "users", "config": {"size": 13}})
        assert started.status_code == 201, started.text
        workflow_id = started.json()["workflow_id"]
        done = wait_for(
            lambda: client.get(f"/workflow/{workflow_id}").json(),
            lambda w: w["current_state"] == "COMPLETE" and w["current_step"] is None,
            what="the workflow to complete",
        )
        events = client.get(f"/workflow/{workflow_id}/events").json()
        machine = client.get("/state-machine").json()

    assert done["task_results"]["EXECUTE"]["result"] == {"total": 78, "attempt": 2}
    failed = [e for e in events if e["type"] == "StepAttemptFailed"]
    assert [(e["data"]["attempt"], e["data"]["error"]) for e in failed] == [
        (1, "ValueError: unlucky size")
    ]
    assert machine["tasks"]["EXECUTE"] == "crunch"
    assert (
        "tasks from tests.usertasks.sample_tasks: steps EXECUTE=crunch, VALIDATE=check; "
        "task types resize" in server.log_path.read_text(encoding="utf-8")
    )


def run_serve_with(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    settings = {
        "DATABASE_URL": f"sqlite:///{workdir / 'wf.db'}",
        "API_HOST": "127.0.0.1",
        "LOG_FILE": "",
    }
    return subprocess.run(
        [*serve_command(free_port()), *args],
        cwd=workdir,
        env=server_environment(settings),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=HEALTH_DEADLINE,
        check=False,
    )


def test_a_task_module_that_cannot_be_loaded_stops_serve_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "twice.py").write_text(
        "from orchestrator.tasks import step\n"
        "@step('INIT')\ndef one(ctx):\n    return {}\n"
        "@step('INIT')\ndef two(ctx):\n    return {}\n",
        encoding="utf-8",
    )

    missing = run_serve_with(tmp_path, "--tasks", "not_here")
    duplicate = run_serve_with(tmp_path, "--tasks", "twice")

    assert missing.returncode == 2
    assert missing.stderr == (
        "orchestrator: cannot import the task module 'not_here': ModuleNotFoundError: "
        "No module named 'not_here'\n"
    )
    assert duplicate.returncode == 2
    assert duplicate.stderr == (
        "orchestrator: task module 'twice': two tasks for INIT: 'one' (twice) and 'two' (twice)\n"
    )
    assert not (tmp_path / "wf.db").exists()  # nothing was claimed


def test_a_bad_tasks_argument_is_an_argument_error(tmp_path: Path) -> None:
    refused = run_serve_with(tmp_path, "--tasks", "my-tasks")

    assert refused.returncode == 2
    assert "argument --tasks: --tasks must be comma-separated Python module names" in refused.stderr


def test_serve_loads_tasks_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "local_tasks.py").write_text(
        "from orchestrator.tasks import task_type\n"
        "@task_type('hello')\ndef hello(ctx):\n    return {'hi': ctx.task_id}\n",
        encoding="utf-8",
    )
    port = free_port()
    settings = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'wf.db'}",
        "API_HOST": "127.0.0.1",
        "LOG_FILE": "",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "serve",
            "--port",
            str(port),
            "--tasks",
            "local_tasks",
        ],
        cwd=tmp_path,
        env=server_environment(settings),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:

            def health() -> int:
                try:
                    return client.get("/health").status_code
                except httpx.TransportError:
                    return 0

            wait_for(health, lambda code: code == 200, what="the server to start")
            created = client.post("/tasks", json={"name": "h", "task_type": "hello"})
            assert created.status_code == 201, created.text
            task = wait_for(
                lambda: client.get(f"/tasks/{created.json()['id']}").json(),
                lambda t: t["status"] == "completed",
                what="the hello task",
            )
    finally:
        process.terminate()
        process.wait(timeout=30)

    assert task["result"]["hi"] == created.json()["id"]
