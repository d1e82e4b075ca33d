"""Stopping the server: a timed-out step does not keep its thread, and an open event stream does
not hold the server either."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.e2e.conftest import StartServer

pytestmark = pytest.mark.e2e


def test_a_timed_out_step_frees_its_thread_and_sigterm_stops_at_once(
    start_server: StartServer,
) -> None:
    # INIT's simulated work takes 0.5 s x 40 = 20 s; the step times out after 0.3 s, and its
    # task, told to stop, gives its thread back instead of sleeping on.
    server = start_server(TASK_TIME_SCALE="40", TASK_TIMEOUT="0.3")
    with server.client() as client:
        workflow_id = client.post("/workflow/start", json={"name": "slow"}).json()["workflow_id"]
        deadline = time.monotonic() + 10
        while client.get(f"/workflow/{workflow_id}").json()["status"] != "FAILED":
            assert time.monotonic() < deadline, "the step did not time out"
            time.sleep(0.05)
        while client.get("/execution/stats").json()["worker_pool"]["active_tasks"] != 0:
            assert time.monotonic() < deadline, "the timed-out step kept its thread"
            time.sleep(0.05)
    process = server.process
    assert process is not None

    began = time.monotonic()
    process.terminate()
    process.wait(timeout=15)

    assert time.monotonic() - began < 5.0
    # uvicorn re-raises the SIGTERM it handled once it has shut down, so -15 is a clean exit.
    assert process.returncode in (0, -15)


def test_sigterm_ends_open_event_streams_at_once(start_server: StartServer) -> None:
    server = start_server(TASK_TIME_SCALE="0", SSE_KEEPALIVE_SECONDS="30")
    process = server.process
    assert process is not None
    with (
        httpx.Client(base_url=server.base_url, timeout=10.0) as client,
        client.stream("GET", "/events/stream") as stream,
    ):
        lines = stream.iter_lines()
        assert next(lines) == ": connected"
        began = time.monotonic()
        process.terminate()
        remaining = list(lines)  # the server closes the stream as it stops
        process.wait(timeout=15)

    assert time.monotonic() - began < 5.0
    assert all(not line or line.startswith(":") for line in remaining)
    # uvicorn re-raises the SIGTERM it handled once it has shut down, so -15 is a clean exit.
    assert process.returncode in (0, -15)


def test_ctrl_c_stops_the_server_gracefully_without_a_traceback(
    start_server: StartServer,
) -> None:
    server = start_server(TASK_TIME_SCALE="0")
    process = server.process
    assert process is not None

    process.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal sends
    process.wait(timeout=15)

    output = server.output_path.read_text()
    assert "Application shutdown complete." in output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    assert process.returncode == 130  # as a shell reports a program Ctrl-C stopped
