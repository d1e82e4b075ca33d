"""`orchestrator demo` against a real server, and against nothing, through the console script."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ServerProcess, StartServer, free_port, server_environment

pytestmark = pytest.mark.e2e

#: The demo's line for one state change: its own time, the workflow, from, to and trigger.
TRANSITION_LINE = re.compile(
    r"^\[(\d\d:\d\d:\d\d\.\d{6})\] workflow (\d+): (\w+) -> (\w+) \((\w+)\)", re.MULTILINE
)
HEADING_LINE = re.compile(r"^=== (\d+)\. (.+) ===$", re.MULTILINE)
MENU_ENTRY = re.compile(r"\[(\d+)\] (.+?)(?=  |$)", re.MULTILINE)

#: What every refusal of a bad --url ends with.
GOOD_URL_HINT = "give one like http://127.0.0.1:8000 (or 127.0.0.1:8000, http:// is assumed)"


def orchestrator_script() -> str:
    """The `orchestrator` console script installed beside the interpreter running the tests."""
    beside = Path(sys.executable).with_name("orchestrator")
    script = str(beside) if beside.exists() else shutil.which("orchestrator")
    assert script, f"no orchestrator console script beside {sys.executable} or on PATH"
    return script


def run_demo(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """The demo command as a user runs it, without the outer environment's settings."""
    return subprocess.run(
        [orchestrator_script(), "demo", *args],
        input=stdin,
        cwd=cwd,
        env=server_environment({}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def api_time(timestamp: str) -> str:
    """A timestamp from the API as UTC time of day to the microsecond."""
    return datetime.fromisoformat(timestamp).astimezone(UTC).strftime("%H:%M:%S.%f")


def seconds_of_day(printed: str) -> float:
    """A printed HH:MM:SS.ffffff as seconds since midnight."""
    hours, minutes, seconds = printed.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def printed_transitions(out: str) -> dict[int, list[tuple[str, str, str, str]]]:
    """Each workflow's transition lines in the order printed: (time, from, to, trigger)."""
    found: dict[int, list[tuple[str, str, str, str]]] = defaultdict(list)
    for at, workflow_id, source, target, trigger in TRANSITION_LINE.findall(out):
        found[int(workflow_id)].append((at, source, target, trigger))
    return found


def recorded_transitions(server: ServerProcess) -> dict[int, list[tuple[str, str, str, str]]]:
    """Each workflow's transitions as the API records them: (time, from, to, trigger)."""
    with server.client() as client:
        workflows: list[dict[str, Any]] = client.get("/workflows", params={"limit": 1000}).json()
    return {
        workflow["workflow_id"]: [
            (api_time(t["timestamp"]), t["from_state"], t["to_state"], t["trigger"])
            for t in workflow["transitions"]
        ]
        for workflow in workflows
    }


def test_the_demo_runs_every_scene_green_against_a_url_without_a_scheme(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(TASK_TIME_SCALE="0.01")

    finished = run_demo("--url", f"127.0.0.1:{server.port}", cwd=tmp_path)

    assert finished.returncode == 0, finished.stderr
    out = finished.stdout
    assert out.startswith(f"orchestrator demo against http://127.0.0.1:{server.port};")
    assert "next -> workflow 2 is COMPLETE" in out
    assert "retry 1 -> INIT" in out
    assert "workflow 6 'demo-failure': COMPLETE, retries 1" in out
    assert "workflows: total 6, init 0, prepare 0, execute 0, validate 0, complete 6" in out
    assert out.rstrip().endswith("demo finished")
    with server.client() as client:
        assert client.get("/execution/stats").json()["workflows"]["complete"] == 6


def test_the_demo_prints_each_transition_once_in_order_at_the_time_the_api_recorded(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(TASK_TIME_SCALE="0.01")

    finished = run_demo("--url", f"127.0.0.1:{server.port}", cwd=tmp_path)

    assert finished.returncode == 0, finished.stderr
    printed = printed_transitions(finished.stdout)
    recorded = recorded_transitions(server)
    assert sorted(printed) == sorted(recorded) == [1, 2, 3, 4, 5, 6]
    for workflow_id, moves in recorded.items():
        assert printed[workflow_id] == moves, f"workflow {workflow_id}"
        times = [seconds_of_day(at) for at, *_ in printed[workflow_id]]
        # Non-decreasing, allowing for a run that crosses midnight.
        assert all((b - a) % 86400 < 43200 for a, b in itertools.pairwise(times))
    failures = {i: [m for m in moves if m[2] == "FAILED"] for i, moves in printed.items()}
    assert {i: len(f) for i, f in failures.items() if f} == {6: 1}
    failed_lines = [line for line in finished.stdout.splitlines() if "-> FAILED" in line]
    assert len(failed_lines) == 2  # the state line, and the summary's history of workflow 6
    assert failed_lines[0].endswith(
        "workflow 6: INIT -> FAILED (fail): SimulatedFailure: simulated failure on attempt 1"
        " (fails while retries < 1)"
    )


def test_the_demo_headings_carry_the_numbers_and_names_of_the_menu(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(TASK_TIME_SCALE="0")
    url = f"127.0.0.1:{server.port}"

    scenes = run_demo("--url", url, cwd=tmp_path)
    menu = run_demo("--url", url, "--interactive", cwd=tmp_path, stdin="q\n")

    assert scenes.returncode == menu.returncode == 0, scenes.stderr + menu.stderr
    headings = [(int(n), title) for n, title in HEADING_LINE.findall(scenes.stdout)]
    entries = [(int(n), title) for n, title in MENU_ENTRY.findall(menu.stdout)]
    assert headings == entries
    assert [n for n, _ in headings] == [1, 2, 3, 4, 5]
    assert headings[:2] == [(1, "Automatic workflow"), (2, "Manual workflow step by step")]


def test_the_demo_summary_prints_task_results_flat(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(TASK_TIME_SCALE="0")

    finished = run_demo("--url", server.base_url, cwd=tmp_path)

    assert finished.returncode == 0, finished.stderr
    out = finished.stdout
    assert (
        '        EXECUTE  execute     {"computation_result": 333283335000, "iterations": 10000,'
        ' "status": "executed"}' in out
    )
    assert (
        '           INIT  initialize  {"message": "Workflow 1 initialized",'
        ' "status": "initialized"}' in out
    )
    assert '"result":' not in out
    assert '"success":' not in out


def test_the_interactive_demo_lists_and_plays_the_stats_scene_then_quits(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(TASK_TIME_SCALE="0")
    with server.client() as client:
        assert client.post("/workflow/start", json={"name": "listed"}).status_code == 201

    finished = run_demo("--url", server.base_url, "--interactive", cwd=tmp_path, stdin="l\n5\nq\n")

    assert finished.returncode == 0, finished.stderr
    assert "listed" in finished.stdout
    assert "=== 5. Execution stats ===" in finished.stdout
    assert "workflows: total 1" in finished.stdout


@pytest.mark.parametrize("scheme", ["http://", ""])
def test_the_demo_exits_non_zero_saying_how_to_start_the_server_when_none_answers(
    scheme: str, tmp_path: Path
) -> None:
    port = free_port()

    finished = run_demo("--url", f"{scheme}127.0.0.1:{port}", cwd=tmp_path)

    assert finished.returncode == 1
    assert f"cannot reach the orchestrator at http://127.0.0.1:{port}" in finished.stderr
    assert "orchestrator serve" in finished.stderr


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://x", "the scheme must be http or https, not 'ftp'"),
        ("http://", "it names no host"),
        ("::::", "a host with ':' in it must be an IPv6 address in brackets"),
        ("127.0.0.1:70000", "the port must be a number from 1 to 65535, not '70000'"),
        ("localhost:8000/?a=1", "it must not have a query"),
    ],
)
def test_the_demo_refuses_a_bad_url_in_one_line_with_exit_code_2(
    url: str, reason: str, tmp_path: Path
) -> None:
    finished = run_demo("--url", url, cwd=tmp_path)

    assert finished.returncode == 2, finished.stderr
    assert finished.stdout == ""
    [line] = finished.stderr.splitlines()
    assert line.startswith(f"orchestrator demo: bad server URL {url!r}: {reason}")
    assert line.endswith(GOOD_URL_HINT)
