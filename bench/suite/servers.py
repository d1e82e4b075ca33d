"""Processes the suite starts: `orchestrator serve` and the bare-Starlette reference, each on a
free loopback port, each stopped when the run's exit stack closes, however the run ends."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench_workflows import HOST, free_port
from httpclient import Connection
from soak import rss_mb

from suite.context import Context

BENCH = Path(__file__).resolve().parent.parent
#: How long a server may take to answer /health (a big log is caught up first).
HEALTH_DEADLINE = 600.0
STOP_DEADLINE = 30.0


def cpu_seconds(pid: int) -> float:
    """CPU time process `pid` has used so far (user and system, all threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Process:
    """A child process on a port, whose stderr goes to a file quoted when it fails."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.port = free_port()
        self.errors = folder / f"{name}.stderr"
        self.started = time.perf_counter()
        with self.errors.open("wb") as stderr:
            self.process = subprocess.Popen(
                [*command, *self._port_arguments()],
                env=env,
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    def _port_arguments(self) -> list[str]:
        return []

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def rss_mb(self) -> float:
        """Its resident memory now (VmRSS), in MB."""
        return rss_mb(self.pid)

    def cpu_seconds(self) -> float:
        """CPU time it has used so far."""
        return cpu_seconds(self.pid)

    def failure(self, what: str) -> RuntimeError:
        """An error saying `what` went wrong, quoting the end of the process's stderr."""
        tail = self.errors.read_text(errors="replace").strip().splitlines()[-5:]
        quoted = " | ".join(tail) or "(no output)"
        return RuntimeError(f"{self.name} on port {self.port}: {what}: {quoted}")

    async def healthy(self, deadline: float = HEALTH_DEADLINE) -> float:
        """Wait until GET /health answers 200; the seconds since the process was started."""
        limit = time.monotonic() + deadline
        while time.monotonic() < limit:
            if self.process.poll() is not None:
                raise self.failure(f"exited with {self.process.returncode} before it was healthy")
            try:
                conn = await Connection.open(HOST, self.port)
                try:
                    status, _ = await conn.request("GET", "/health")
                finally:
                    await conn.close()
                if status == 200:
                    return time.perf_counter() - self.started
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                pass
            await asyncio.sleep(0.01)
        raise self.failure(f"not healthy after {deadline:.0f} s")

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_DEADLINE; reaped either way."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                await asyncio.to_thread(self.process.wait, STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
        await asyncio.to_thread(self.process.wait)

    def kill(self) -> None:
        """SIGKILL, as a crash would, and reap."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()


class Orchestrator(Process):
    """`orchestrator serve` on `database_url`, with `settings` (environment names) on top of
    instant tasks, quiet logs and no token."""

    def __init__(
        self, database_url: str, folder: Path, name: str, settings: dict[str, str]
    ) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "TASK_TIME_SCALE": "0",
            "LOG_LEVEL": "WARNING",
            "LOG_FILE": "",
            "ACCESS_LOG": "false",
            "API_TOKEN": "",
            **settings,
        }
        command = [sys.executable, "-m", "orchestrator", "serve", "--host", HOST]
        super().__init__(name, command, env, folder)

    def _port_arguments(self) -> list[str]:
        return ["--port", str(self.port)]

    async def workflow_counts(self) -> dict[str, int]:
        """The `workflows` counters of GET /execution/stats."""
        conn = await Connection.open(HOST, self.port)
        try:
            status, body = await conn.request("GET", "/execution/stats")
        finally:
            await conn.close()
        if status != 200:
            raise self.failure(f"GET /execution/stats answered {status}")
        counts: dict[str, int] = json.loads(body)["workflows"]
        return counts


async def start_orchestrator(
    ctx: Context,
    database_url: str,
    folder: Path,
    name: str = "orchestrator",
    settings: dict[str, str] | None = None,
    *,
    wait: bool = True,
) -> Orchestrator:
    """Start a server that the run stops at its end (or earlier, through `stop`), and wait until
    it is healthy unless told not to."""
    server = Orchestrator(database_url, folder, name, settings or {})
    ctx.stack.push_async_callback(server.stop)
    if wait:
        await server.healthy()
    return server


class BareStarlette(Process):
    """bench/bare_starlette.py: GET /workflow/{id} answers a small JSON dict."""

    def __init__(self, folder: Path) -> None:
        command = [sys.executable, str(BENCH / "bare_starlette.py")]
        super().__init__("bare-starlette", command, dict(os.environ), folder)

    def _port_arguments(self) -> list[str]:
        return [str(self.port)]


async def start_bare_starlette(ctx: Context, folder: Path) -> Process:
    """bench/bare_starlette.py answering a small JSON dict, under the orchestrator's uvicorn
    settings; healthy when this returns."""
    server = BareStarlette(folder)
    ctx.stack.push_async_callback(server.stop)
    await server.healthy()
    return server
