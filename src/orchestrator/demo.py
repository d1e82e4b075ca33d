"""`orchestrator demo`: the classic demonstration, replayed against a running server over HTTP.

It uses only the standard library, so it runs wherever the package is installed.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TextIO

TERMINAL = {"COMPLETE", "FAILED", "CANCELLED"}


class ServerUnreachable(Exception):
    """Nothing answers at the URL."""


class ApiError(Exception):
    """The server answered with an error body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{status} {body.get('error')}: {body.get('detail')}")


class Client:
    """A tiny JSON client for the orchestrator's API."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request; return the decoded JSON (None for 204)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {"error": "http_error", "detail": raw.decode(errors="replace")}
            raise ApiError(exc.code, payload) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServerUnreachable(str(exc)) from None
        return json.loads(raw) if raw else None


class Demo:
    """The demonstration's scenes, printing as they go."""

    def __init__(self, client: Client, out: TextIO = sys.stdout, poll: float = 0.1) -> None:
        self.client = client
        self.out = out
        self.poll = poll
        self.started = time.monotonic()

    def say(self, text: str = "") -> None:
        """Print one line with the time since the demo began."""
        stamp = f"[{time.monotonic() - self.started:6.2f}s] " if text else ""
        print(f"{stamp}{text}", file=self.out, flush=True)

    def heading(self, text: str) -> None:
        """Print a scene title."""
        print(f"\n=== {text} ===", file=self.out, flush=True)

    def start(self, name: str, **fields: Any) -> int:
        """Start a workflow; return its id."""
        answer = self.client.call("POST", "/workflow/start", {"name": name, **fields})
        self.say(f"started workflow {answer['workflow_id']} ({name}) in {answer['status']}")
        return int(answer["workflow_id"])

    def follow(self, workflow_ids: list[int], timeout: float = 120.0) -> dict[int, Any]:
        """Print each state change of the workflows until all are finished; return them."""
        seen = dict.fromkeys(workflow_ids, 0)
        final: dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        while len(final) < len(workflow_ids) and time.monotonic() < deadline:
            for workflow_id in workflow_ids:
                if workflow_id in final:
                    continue
                workflow = self.client.call("GET", f"/workflow/{workflow_id}")
                for move in workflow["transitions"][seen[workflow_id] :]:
                    self.say(
                        f"workflow {workflow_id}: {move['from_state']} -> {move['to_state']} "
                        f"({move['trigger']})"
                    )
                seen[workflow_id] = len(workflow["transitions"])
                finished = workflow["status"] in TERMINAL and workflow["step_running"] is None
                if finished:
                    final[workflow_id] = workflow
            time.sleep(self.poll)
        return final

    def summary(self, workflow: dict[str, Any]) -> None:
        """Print the transitions and task results of one workflow."""
        self.say(
            f"workflow {workflow['workflow_id']} '{workflow['name']}': {workflow['status']}, "
            f"retries {workflow['retries']}"
            + (f", error: {workflow['error_message']}" if workflow["error_message"] else "")
        )
        for move in workflow["transitions"]:
            print(
                f"      {move['timestamp']}  {move['from_state']:>9} -> {move['to_state']:<9}"
                f" ({move['trigger']})",
                file=self.out,
            )
        for state, result in workflow["task_results"].items():
            print(f"      {state:>9}: {json.dumps(result, sort_keys=True)}", file=self.out)

    def automatic(self) -> None:
        """Scene 1: an automatic workflow runs to the end by itself."""
        self.heading("1. automatic run")
        workflow_id = self.start("demo-automatic", config={"iterations": 10_000})
        for workflow in self.follow([workflow_id]).values():
            self.summary(workflow)

    def manual(self) -> None:
        """Scene 2: a manual workflow advanced one step per `next`."""
        self.heading("2. manual, step by step")
        workflow_id = self.start("demo-manual", auto_start=False)
        for _ in range(4):
            answer = self.client.call("POST", f"/workflow/{workflow_id}/next")
            self.say(f"next -> workflow {workflow_id} is {answer['current_state']}")
        for workflow in self.follow([workflow_id]).values():
            self.summary(workflow)

    def concurrent(self) -> None:
        """Scene 3: three workflows at once."""
        self.heading("3. three concurrent workflows")
        ids = [self.start(f"demo-concurrent-{n}") for n in (1, 2, 3)]
        for workflow in self.follow(ids).values():
            self.summary(workflow)

    def failure_and_retry(self) -> None:
        """Scene 4: a simulated failure, then retry."""
        self.heading("4. failure and retry")
        workflow_id = self.start("demo-failure", config={"simulate_failure": True})
        failed = self.follow([workflow_id])[workflow_id]
        self.say(f"workflow {workflow_id} is {failed['status']}: {failed['error_message']}")
        answer = self.client.call("POST", f"/workflow/{workflow_id}/retry")
        self.say(f"retry {answer['retries']} -> {answer['current_state']}")
        for workflow in self.follow([workflow_id]).values():
            self.summary(workflow)

    def stats(self) -> None:
        """Scene 5: the stats."""
        self.heading("5. stats")
        stats = self.client.call("GET", "/execution/stats")
        pool = stats["worker_pool"]
        self.say(
            f"worker pool: {pool['active_tasks']} active of {pool['max_workers']}, "
            f"{pool['queue_size']} queued"
        )
        counts = ", ".join(f"{k} {v}" for k, v in stats["workflows"].items())
        self.say(f"workflows: {counts}")

    def run_all(self) -> None:
        """Every scene in order."""
        self.automatic()
        self.manual()
        self.concurrent()
        self.failure_and_retry()
        self.stats()


def interactive(demo: Demo, read: Callable[[str], str] = input) -> None:
    """The menu: start, next, cancel, show, list, stats, run all, quit."""
    menu = (
        "\n[1] start automatic  [2] start manual  [3] next  [4] cancel  [5] show  [6] list"
        "  [7] stats  [8] run all  [q] quit"
    )
    while True:
        print(menu, file=demo.out, flush=True)
        try:
            choice = read("> ").strip().lower()
        except EOFError:
            return
        try:
            if choice in ("q", "quit", "exit"):
                return
            if choice == "1":
                demo.start(read("name: ").strip() or "interactive")
            elif choice == "2":
                demo.start(read("name: ").strip() or "interactive-manual", auto_start=False)
            elif choice in ("3", "4", "5"):
                workflow_id = int(read("workflow id: "))
                if choice == "3":
                    answer = demo.client.call("POST", f"/workflow/{workflow_id}/next")
                    demo.say(f"workflow {workflow_id} is {answer['current_state']}")
                elif choice == "4":
                    answer = demo.client.call("POST", f"/workflow/{workflow_id}/cancel")
                    demo.say(f"workflow {workflow_id} is {answer['current_state']}")
                else:
                    demo.summary(demo.client.call("GET", f"/workflow/{workflow_id}"))
            elif choice == "6":
                for workflow in demo.client.call("GET", "/workflows?limit=1000"):
                    demo.say(
                        f"{workflow['workflow_id']:>5}  {workflow['status']:<9}  {workflow['name']}"
                    )
            elif choice == "7":
                demo.stats()
            elif choice == "8":
                demo.run_all()
            else:
                print(f"unknown choice {choice!r}", file=demo.out)
        except ApiError as exc:
            print(f"error: {exc}", file=demo.out)
        except ValueError:
            print("a workflow id is a positive integer", file=demo.out)


def run_demo(url: str, *, is_interactive: bool, out: TextIO = sys.stdout) -> int:
    """Run the demo; 0 on success, 1 if the server cannot be reached or answers an error."""
    client = Client(url)
    try:
        client.call("GET", "/health")
    except (ServerUnreachable, ApiError) as exc:
        print(
            f"orchestrator demo: cannot reach the orchestrator at {url} ({exc}).\n"
            "Start it first, for example: orchestrator serve  (or: python -m orchestrator serve)",
            file=sys.stderr,
        )
        return 1
    demo = Demo(client, out)
    try:
        if is_interactive:
            interactive(demo)
        else:
            demo.run_all()
            print("\ndemo finished", file=out)
    except (ServerUnreachable, ApiError) as exc:
        print(f"orchestrator demo: {exc}", file=sys.stderr)
        return 1
    return 0
