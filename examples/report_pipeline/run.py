"""Run the report pipeline end to end, as a user runs the orchestrator:

    .venv/bin/python examples/report_pipeline/run.py [--out DIR]

1. A document server (http.server, in a thread) serves documents/ on a free loopback port;
   its /flaky/ path answers 503 to the first request for each document.
2. `orchestrator serve --tasks pipeline_tasks` runs as a child process on another free port,
   in this directory (so it imports pipeline_tasks.py), with its SQLite database and its log
   in the output directory.
3. Through orchestrator.client.Client it starts one workflow per document; each runs INIT ->
   PREPARE -> EXECUTE -> VALIDATE -> COMPLETE by itself. It waits for them, prints a summary,
   the retries the history recorded, and one report.

Exit status: 0 when every workflow is COMPLETE; 1, saying why, otherwise; 130 on Ctrl-C. Both
servers are stopped in every case; the output directory is kept.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import IO, Any

try:
    import httpx

    from orchestrator.client import (
        ApiError,
        Client,
        ClientError,
        ConnectionFailed,
        RetryPolicy,
        WaitTimeout,
        Workflow,
    )
except ImportError as exc:  # run with a Python that lacks the project
    sys.exit(
        f"report_pipeline: cannot import orchestrator ({exc}); install the project "
        "(pip install -e .) and run this with that Python, e.g. "
        ".venv/bin/python examples/report_pipeline/run.py"
    )

HERE = Path(__file__).resolve().parent
DOCUMENTS = HERE / "documents"
#: The documents reported on by default: paths on the document server.
DEFAULT_DOCUMENTS = ("/docs/lighthouse.txt", "/docs/release-notes.json", "/flaky/field-notes.txt")
#: Seconds the server gets to answer /health, and each workflow to finish.
START_DEADLINE = 30.0
WAIT_DEADLINE = 30.0
STOP_DEADLINE = 15.0
#: Settings this script decides; an outer value (an API_TOKEN, say) would only get in the way.
SERVER_SETTINGS = (
    "DATABASE_URL",
    "API_HOST",
    "API_PORT",
    "API_RELOAD",
    "API_TOKEN",
    "ALLOWED_HOSTS",
    "LOG_FILE",
    "TASKS_MODULES",
)


class PipelineFailed(Exception):
    """Something the run depends on failed; the message says what, as one sentence."""


# The document server --------------------------------------------------------------------------


class DocumentServer(ThreadingHTTPServer):
    """Serves the files of documents/ at /docs/<name>, and at /flaky/<name>, which answers 503
    to the first request for each name (to show a step's retries)."""

    daemon_threads = True

    def __init__(self, directory: Path) -> None:
        super().__init__(("127.0.0.1", 0), DocumentHandler)
        self.documents = {path.name: path for path in directory.iterdir() if path.is_file()}
        self._refused: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self.serve_forever, name="document-server", daemon=True
        )

    @property
    def url(self) -> str:
        """The server's root URL, without the final slash."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def refuse_first(self, name: str) -> bool:
        """True the first time `name` is asked for on /flaky/."""
        with self._lock:
            first = name not in self._refused
            self._refused.add(name)
            return first

    def __enter__(self) -> DocumentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()


class DocumentHandler(BaseHTTPRequestHandler):
    """GET /docs/<name> and /flaky/<name>; anything else is 404."""

    server: DocumentServer

    def do_GET(self) -> None:
        kind, _, name = self.path.lstrip("/").partition("/")
        path = self.server.documents.get(name)
        if kind not in ("docs", "flaky") or path is None:
            self._answer(404, b"no such document\n", "text/plain; charset=utf-8")
        elif kind == "flaky" and self.server.refuse_first(name):
            self._answer(503, b"busy, try again\n", "text/plain; charset=utf-8")
        else:
            is_json = path.suffix == ".json"
            content_type = "application/json" if is_json else "text/plain; charset=utf-8"
            self._answer(200, path.read_bytes(), content_type)

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the script's output is its summary."""


# The orchestrator server --------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nothing listens on now. (Another program could take it before the
    server binds it; the server then stops at once, saying so, and this script reports it.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class OrchestratorServer:
    """`orchestrator serve --tasks pipeline_tasks` as a child process, its files in `out`."""

    out: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's root URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Everything the server prints."""
        return self.out / "orchestrator.log"

    @property
    def command(self) -> list[str]:
        """The command line: the installed package, run by this Python."""
        return [
            *(sys.executable, "-m", "orchestrator", "serve"),
            *("--port", str(self.port), "--tasks", "pipeline_tasks"),
        ]

    def __enter__(self) -> OrchestratorServer:
        self.port = free_port()
        environment = {k: v for k, v in os.environ.items() if k not in SERVER_SETTINGS}
        environment["DATABASE_URL"] = f"sqlite:///{self.out / 'orchestrator.db'}"
        environment["API_HOST"] = "127.0.0.1"
        environment["LOG_FILE"] = ""  # its console output goes to log_path already
        with self.log_path.open("ab") as log:
            # cwd=HERE: the server puts its working directory on the import path, so
            # `--tasks pipeline_tasks` finds pipeline_tasks.py, as it finds a user's module.
            self.process = subprocess.Popen(
                self.command,
                cwd=HERE,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_until_healthy()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_DEADLINE
        # No retries: this loop is the retry, and it also watches the process.
        with client_of(self.url, timeout=2.0, retry=RetryPolicy(max_retries=0)) as client:
            while True:
                code = self.process.poll() if self.process else None
                if code is not None:
                    raise PipelineFailed(
                        f"orchestrator serve exited with status {code} before it answered; "
                        f"its output ({self.log_path}):\n{tail(self.log_path)}"
                    )
                with contextlib.suppress(ConnectionFailed):
                    if client.health().status == "healthy":
                        return
                if time.monotonic() > deadline:
                    raise PipelineFailed(
                        f"orchestrator serve did not answer on {self.url} within "
                        f"{START_DEADLINE:g} s; its output ({self.log_path}):\n"
                        + tail(self.log_path)
                    )
                time.sleep(0.05)

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server (SIGTERM; SIGKILL if it does not stop in time, or on a second
        Ctrl-C) and reap it."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()  # it lets running steps finish (SHUTDOWN_GRACE_SECONDS)
        try:
            process.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        except KeyboardInterrupt:  # Ctrl-C again while it stops: stop it at once
            process.kill()
            process.wait()
            raise


def client_of(url: str, **options: Any) -> Client:
    """A client for the server at `url`, straight to it.

    Its own transport: httpx then ignores HTTP_PROXY and the like, which would otherwise send
    even requests for 127.0.0.1 to a proxy (unless NO_PROXY names it).
    """
    return Client(url, transport=httpx.HTTPTransport(), **options)


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a file, indented, for an error message."""
    if not path.exists():
        return "    (nothing)"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in text) or "    (nothing)"


# The run ----------------------------------------------------------------------------------------


def run(
    out: Path, documents: Sequence[str], timeout: float, line_delay: float, say: IO[str]
) -> int:
    """Serve the documents, run the orchestrator, one workflow per document; the exit status."""
    reports = out / "reports"
    with DocumentServer(DOCUMENTS) as document_server, OrchestratorServer(out) as server:
        print(f"Document server  {document_server.url}/docs/", file=say)
        print(f"Orchestrator     {server.url}  ({' '.join(server.command[2:])})", file=say)
        print(f"Outputs          {out}", file=say)
        began = time.monotonic()
        with client_of(server.url) as client:
            urls = [f"{document_server.url}/{path.lstrip('/')}" for path in documents]
            ids = [start(client, url, reports, line_delay) for url in urls]
            print(f"\nStarted {len(ids)} workflows: {', '.join(map(str, ids))}.", file=say)
            finished = [wait(client, workflow_id, timeout) for workflow_id in ids]
            elapsed = time.monotonic() - began
            print_summary(finished, say)
            print_retries(client, ids, say)
        done = [w for w in finished if w.status == "COMPLETE"]
        if done:
            report = Path(done[0].task_results["COMPLETE"]["report"])
            print(f"\nReport of workflow {done[0].workflow_id} ({report}):\n", file=say)
            print(report.read_text(encoding="utf-8"), file=say)
    failed = [w for w in finished if w.status != "COMPLETE"]
    for workflow in failed:
        print(f"report_pipeline: {why_not_complete(workflow)}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(finished)} workflows did not complete.", file=say)
        return 1
    every = f"All {len(finished)} workflows" if len(finished) > 1 else "The workflow"
    print(
        f"{every} COMPLETE in {elapsed:.1f} s; "
        "the orchestrator and the document server are stopped.",
        file=say,
    )
    return 0


def start(client: Client, url: str, reports: Path, line_delay: float) -> int:
    """Start the workflow that reports on `url`; its id."""
    name = "report-" + Path(url).stem
    # The config as pipeline_tasks.ReportConfig declares it; the server checks it on start.
    config = {"url": url, "report_dir": str(reports), "top": 5, "line_delay": line_delay}
    try:
        return client.start(name, config=config).workflow_id
    except ApiError as exc:  # e.g. 422: the config does not fit pipeline_tasks.ReportConfig
        raise PipelineFailed(f"the server refused workflow {name!r}: {exc.detail}") from exc


def wait(client: Client, workflow_id: int, timeout: float) -> Workflow:
    """The workflow once it is COMPLETE, FAILED or CANCELLED."""
    try:
        return client.wait(workflow_id, timeout=timeout)
    except WaitTimeout as exc:
        raise PipelineFailed(
            f"workflow {workflow_id} did not finish within {timeout:g} s (it is {exc.last_status})"
        ) from exc


def print_summary(workflows: Sequence[Workflow], say: IO[str]) -> None:
    """One line per workflow: id, state, words counted, fetch attempt, report path."""
    print(f"\n{'workflow':>8}  {'state':<9} {'words':>5}  {'fetched':<9}  report", file=say)
    for workflow in workflows:
        results = workflow.task_results
        words = results.get("EXECUTE", {}).get("words", "-")
        attempt = results.get("PREPARE", {}).get("attempt")
        fetched = f"attempt {attempt}" if attempt else "-"
        report = results.get("COMPLETE", {}).get("report", "-")
        print(
            f"{workflow.workflow_id:>8}  {workflow.status:<9} {words:>5}  {fetched:<9}  {report}",
            file=say,
        )


def print_retries(client: Client, ids: Sequence[int], say: IO[str]) -> None:
    """The failed attempts that were tried again, as each workflow's history recorded them."""
    failures = [
        (workflow_id, event.data)
        for workflow_id in ids
        for event in client.workflow_events(workflow_id)
        if event.type == "StepAttemptFailed"
    ]
    if not failures:
        return
    print("\nAttempts that failed and were tried again (from the workflows' history):", file=say)
    for workflow_id, data in failures:
        print(
            f"  workflow {workflow_id} {data['state']} attempt {data['attempt']}, tried again "
            f"after {data['retry_in']:g} s: {data['error']}",
            file=say,
        )


def why_not_complete(workflow: Workflow) -> str:
    """A sentence: which workflow, its state, the step that failed and its error."""
    failed_in = next(
        (t.from_state for t in reversed(workflow.transitions) if t.to_state == "FAILED"), None
    )
    where = f" in {failed_in}" if failed_in else ""
    error = f": {workflow.error_message}" if workflow.error_message else ""
    return f"workflow {workflow.workflow_id} ({workflow.name}) is {workflow.status}{where}{error}"


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C, so both servers are stopped."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def output_directory(wanted: str | None) -> Iterator[Path]:
    """`wanted` (made if missing), or a new temporary directory; kept afterwards either way."""
    out = Path(wanted).resolve() if wanted else Path(tempfile.mkdtemp(prefix="report-pipeline-"))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PipelineFailed(f"cannot use {out} as the output directory: {exc}") from exc
    yield out


def seconds(text: str) -> float:
    """A command-line number of seconds: finite, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, 0 or more, not {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and run; the exit status."""
    parser = argparse.ArgumentParser(
        description="Run the report pipeline end to end: a document server, `orchestrator "
        "serve --tasks pipeline_tasks`, and one workflow per document; print a summary."
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="directory for the database, the server log and the reports "
        "(default: a new temporary directory; kept)",
    )
    parser.add_argument(
        "--document",
        action="append",
        dest="documents",
        metavar="PATH",
        help="a path on the document server to report on, repeatable "
        f"(default: {' '.join(DEFAULT_DOCUMENTS)}; also /docs/blank.txt, which fails VALIDATE)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=seconds,
        default=WAIT_DEADLINE,
        help=f"how long each workflow may take (default: {WAIT_DEADLINE:g})",
    )
    parser.add_argument(
        "--line-delay",
        metavar="SECONDS",
        type=seconds,
        default=0.0,
        help="seconds EXECUTE pauses per line, to watch its progress (GET /workflow/{id})",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        with output_directory(args.out) as out:
            documents = args.documents or DEFAULT_DOCUMENTS
            return run(out, documents, args.timeout, args.line_delay, sys.stdout)
    except PipelineFailed as exc:
        print(f"report_pipeline: {exc}", file=sys.stderr)
        return 1
    except ClientError as exc:
        print(
            f"report_pipeline: the orchestrator did not answer as expected: {exc}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        print("report_pipeline: interrupted; both servers are stopped.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `run.py | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
