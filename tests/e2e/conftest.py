"""Fixtures that run `orchestrator serve` as a child process on a free port and a temp database.

Each server gets its own working directory (so no stray `.env` is read), its own SQLite file and
log file, and its console output goes to a file that is quoted when the server fails to start.
Every process started here is stopped and reaped in teardown, whatever the test did to it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from tests.waiting import wait_for as wait_for

#: How long a test waits for a condition of a real server before it counts as a failure.
DEADLINE = 15.0
HEALTH_DEADLINE = 15.0
STOP_DEADLINE = 10.0

#: Settings the server reads from its environment; the outer environment's values are dropped.
SETTING_NAMES = (
    "DATABASE_URL",
    "API_HOST",
    "API_PORT",
    "API_RELOAD",
    "MAX_WORKERS",
    "TASK_TIMEOUT",
    "LOG_LEVEL",
    "LOG_FILE",
    "TASK_TIME_SCALE",
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_KEYS",
    "MAX_HEADER_BYTES",
    "MAX_CONNECTIONS",
    "CLIENT_TIMEOUT_SECONDS",
    "TASK_WORKERS",
    "MAX_QUEUED_STEPS",
    "MAX_RESPONSE_BYTES",
    "LOG_MAX_BYTES",
    "LOG_BACKUPS",
    "SHUTDOWN_GRACE_SECONDS",
    "API_TOKEN",
    "ALLOWED_HOSTS",
    "ALLOW_INSECURE_REMOTE",
    "CORS_ORIGINS",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve_command(port: int) -> list[str]:
    """The command line that runs the server under the interpreter running the tests."""
    return [sys.executable, "-m", "orchestrator", "serve", "--port", str(port)]


def server_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """The outer environment without any orchestrator setting, plus `settings`."""
    environment = {name: value for name, value in os.environ.items() if name not in SETTING_NAMES}
    environment.update(settings)
    return environment


def run_on(
    url: str, cwd: Path, *args: str, stdin: str | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """`orchestrator <args>` with DATABASE_URL=`url`, as an operator runs a tool on a store."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        env=server_environment({"DATABASE_URL": url}),
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
    )


class ServerDidNotStart(AssertionError):
    """The server process exited or did not answer /health before the deadline."""


@dataclass
class ServerProcess:
    """One `orchestrator serve` process; it can be killed and restarted on the same database."""

    workdir: Path
    port: int
    overrides: Mapping[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base_url(self) -> str:
        """The server's root URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        """The SQLite file that holds the event log and the read models."""
        return self.workdir / "wf.db"

    @property
    def log_path(self) -> Path:
        """The file LOG_FILE points at."""
        return self.workdir / "orchestrator.log"

    @property
    def output_path(self) -> Path:
        """Where the current (or last) process writes its stdout and stderr."""
        return self.workdir / f"server-{self.starts}.out"

    @property
    def settings(self) -> dict[str, str]:
        """The environment settings the server runs with: instant tasks unless overridden."""
        return {
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            "API_HOST": "127.0.0.1",
            "LOG_FILE": str(self.log_path),
            "TASK_TIME_SCALE": "0",
            **self.overrides,
        }

    def output(self) -> str:
        """What the current (or last) process printed so far."""
        if not self.output_path.exists():
            return ""
        return self.output_path.read_text(encoding="utf-8", errors="replace")

    def start(self) -> None:
        """Spawn the process and return once GET /health answers 200."""
        if self.process is not None:
            raise RuntimeError(f"server on port {self.port} is already running")
        self.starts += 1
        with self.output_path.open("wb") as output:
            self.process = subprocess.Popen(
                serve_command(self.port),
                cwd=self.workdir,
                env=server_environment(self.settings),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_healthy()

    def _wait_until_healthy(self) -> None:
        process = self.process
        assert process is not None
        deadline = time.monotonic() + HEALTH_DEADLINE
        last_problem = "no answer yet"
        with httpx.Client(base_url=self.base_url, timeout=1.0) as client:
            while time.monotonic() < deadline:
                code = process.poll()
                if code is not None:
                    self.process = None
                    raise ServerDidNotStart(
                        f"orchestrator serve exited with code {code} before /health answered;"
                        f" output:\n{self.output()}"
                    )
                try:
                    response = client.get("/health")
                except httpx.TransportError as exc:
                    last_problem = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code == 200:
                        return
                    last_problem = f"/health answered {response.status_code}: {response.text}"
                time.sleep(0.05)
        self.kill()
        raise ServerDidNotStart(
            f"orchestrator serve on port {self.port} was not healthy after {HEALTH_DEADLINE:g} s"
            f" ({last_problem}); output:\n{self.output()}"
        )

    def kill(self) -> None:
        """SIGKILL the process, as a crash would, and reap it."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_DEADLINE)
        self.process = None

    def restart(self) -> None:
        """Kill the process if it still runs, then start a new one on the same port and file."""
        self.kill()
        self.start()

    def stop(self) -> None:
        """Ask the process to shut down (SIGTERM); kill it if it does not within the deadline."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_DEADLINE)
        self.process = None

    def client(self) -> httpx.Client:
        """A client for this server; use it in a `with` block so it is closed."""
        return httpx.Client(base_url=self.base_url, timeout=10.0)

    def async_client(self) -> httpx.AsyncClient:
        """An async client for this server; use it in an `async with` block."""
        return httpx.AsyncClient(base_url=self.base_url, timeout=10.0)


class StartServer(Protocol):
    """Starts a healthy server whose settings are the defaults plus `overrides`."""

    def __call__(self, **overrides: str) -> ServerProcess: ...


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """A function that starts a healthy server with extra settings, e.g. `MAX_WORKERS="5"`."""
    servers: list[ServerProcess] = []

    def start(**overrides: str) -> ServerProcess:
        workdir = tmp_path / f"server-{len(servers) + 1}"
        workdir.mkdir()
        server = ServerProcess(workdir=workdir, port=free_port(), overrides=overrides)
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def server(start_server: StartServer) -> ServerProcess:
    """A healthy server with instant tasks and default settings otherwise."""
    return start_server()


class RunServe(Protocol):
    """Runs `orchestrator serve` to its end with the defaults plus `overrides`."""

    def __call__(self, **overrides: str) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture
def run_serve(tmp_path: Path) -> RunServe:
    """A function that runs `orchestrator serve` in `tmp_path`, for settings that stop it."""

    def run(**overrides: str) -> subprocess.CompletedProcess[str]:
        settings = {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'wf.db'}",
            "API_HOST": "127.0.0.1",
            "LOG_FILE": str(tmp_path / "orchestrator.log"),
            "TASK_TIME_SCALE": "0",
            **overrides,
        }
        return subprocess.run(
            serve_command(free_port()),
            cwd=tmp_path,
            env=server_environment(settings),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=HEALTH_DEADLINE,
            check=False,
        )

    return run
