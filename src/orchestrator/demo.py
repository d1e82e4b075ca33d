"""`orchestrator demo`: the classic demonstration, replayed against a running server over HTTP.

It uses only the standard library, so it runs wherever the package is installed.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from orchestrator.demo_url import BadUrl, normalize_url

TERMINAL = {"COMPLETE", "FAILED", "CANCELLED"}

#: The keys of a task_results entry around the task's own (flat) result.
_RESULT_WRAPPER = ("success", "result", "task_type")


class ServerUnreachable(Exception):
    """Nothing answers at the URL."""


class ApiError(Exception):
    """The server answered with an error body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{status} {body.get('error')}: {body.get('detail')}")


class DidNotFinish(Exception):
    """A workflow the demo follows did not finish in time."""


class Api(Protocol):
    """What the demo needs of a client: one JSON request at a time."""

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request; return the decoded JSON (None for 204)."""
        ...


class Client:
    """A tiny JSON client for the orchestrator's API."""

    def __init__(self, base_url: str, timeout: float = 30.0, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json"}
        if token:  # the server's own API_TOKEN, when the demo runs with the server's settings
            self.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request; return the decoded JSON (None for 204)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers=self.headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {"error": "http_error", "detail": raw.decode(errors="replace")}
            raise ApiError(exc.code, payload) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise ServerUnreachable(str(exc)) from None
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            detail = f"the answer to {method} {path} is not JSON: {raw[:80]!r}"
            raise ApiError(status, {"error": "not_json", "detail": detail}) from None


def parse_time(text: Any) -> datetime | None:
    """The instant an API timestamp names, in UTC; None if it is not one."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def format_time(moment: datetime) -> str:
    """A time as the demo prints it: UTC time of day to the microsecond."""
    return moment.astimezone(UTC).strftime("%H:%M:%S.%f")


def describe_transition(workflow_id: int, move: dict[str, Any]) -> str:
    """One transition as a line of text, with the error that caused a failure."""
    text = f"workflow {workflow_id}: {move['from_state']} -> {move['to_state']} ({move['trigger']})"
    metadata = move.get("transition_metadata") or {}
    if move["to_state"] == "FAILED" and metadata.get("error"):
        text += f": {metadata['error']}"
    return text


def flat_result(entry: Any) -> Any:
    """The task's own result in a task_results entry, without the success/result/type wrapper."""
    if isinstance(entry, dict) and all(key in entry for key in _RESULT_WRAPPER):
        if isinstance(entry["result"], dict):
            return entry["result"]
        return {k: v for k, v in entry.items() if k not in _RESULT_WRAPPER}
    return entry


def describe_task_result(state: str, entry: Any) -> str:
    """One task_results entry as a line: state, task type, the flat result, and any failure."""
    text = json.dumps(flat_result(entry), sort_keys=True)
    if not (isinstance(entry, dict) and "task_type" in entry):
        return f"{state:>9}: {text}"
    failed = "  (failed)" if entry.get("success") is False else ""
    return f"{state:>9}  {entry['task_type']:<10}  {text}{failed}"


@dataclass(frozen=True)
class _Line:
    """A line waiting to be printed at its own time."""

    at: datetime
    text: str


class Demo:
    """The demonstration's scenes, printing as they go."""

    def __init__(
        self,
        client: Api,
        out: TextIO = sys.stdout,
        poll: float = 0.1,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.out = out
        self.poll = poll
        self.clock = clock
        # Transitions already printed, by (workflow id, transition id): a workflow followed twice
        # (failure, then retry) must not print its failure twice.
        self.shown: set[tuple[int, Any]] = set()
        # Workflows started but not yet announced, with the line that announces them at their
        # start time, so the announcement sorts before their first transition.
        self.announce: dict[int, str] = {}

    def say(self, text: str = "", at: datetime | None = None) -> None:
        """Print one line stamped with `at` (default: now), in UTC."""
        stamp = f"[{format_time(at or self.clock())}] " if text else ""
        print(f"{stamp}{text}", file=self.out, flush=True)

    def heading(self, text: str) -> None:
        """Print a scene title."""
        print(f"\n=== {text} ===", file=self.out, flush=True)

    def start(self, name: str, **fields: Any) -> int:
        """Start a workflow; return its id. It is announced by the next catch_up."""
        answer = self.client.call("POST", "/workflow/start", {"name": name, **fields})
        workflow_id = int(answer["workflow_id"])
        self.announce[workflow_id] = (
            f"started workflow {workflow_id} ({name}) in {answer['status']}"
        )
        return workflow_id

    def catch_up(self, workflow_ids: Iterable[int]) -> dict[int, Any]:
        """Read the workflows; print what happened to them since last time, in time order."""
        noticed = self.clock()
        lines: list[_Line] = []
        workflows: dict[int, Any] = {}
        for workflow_id in workflow_ids:
            workflow = self.client.call("GET", f"/workflow/{workflow_id}")
            workflows[workflow_id] = workflow
            if workflow_id in self.announce:
                started = parse_time(workflow.get("started_at") or workflow.get("created_at"))
                lines.append(_Line(started or noticed, self.announce.pop(workflow_id)))
            for index, move in enumerate(workflow["transitions"]):
                key = (workflow_id, move.get("id", f"#{index}"))
                if key not in self.shown:
                    self.shown.add(key)
                    at = parse_time(move.get("timestamp")) or noticed
                    lines.append(_Line(at, describe_transition(workflow_id, move)))
        # A stable sort: lines with equal times keep the order of each workflow's history.
        for line in sorted(lines, key=lambda line: line.at):
            self.say(line.text, at=line.at)
        return workflows

    def follow(self, workflow_ids: list[int], timeout: float = 120.0) -> dict[int, Any]:
        """Print each state change of the workflows until all are finished; return them."""
        final: dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        while True:
            waiting = [i for i in workflow_ids if i not in final]
            for workflow_id, workflow in self.catch_up(waiting).items():
                if workflow["status"] in TERMINAL and workflow["step_running"] is None:
                    final[workflow_id] = workflow
            if len(final) == len(workflow_ids):
                return final
            if time.monotonic() >= deadline:
                unfinished = ", ".join(str(i) for i in workflow_ids if i not in final)
                raise DidNotFinish(f"workflow {unfinished} did not finish within {timeout:g} s")
            time.sleep(self.poll)

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
        for state, entry in workflow["task_results"].items():
            print(f"      {describe_task_result(state, entry)}", file=self.out)

    def automatic(self) -> None:
        """An automatic workflow runs to the end by itself."""
        workflow_id = self.start("demo-automatic", config={"iterations": 10_000})
        for workflow in self.follow([workflow_id]).values():
            self.summary(workflow)

    def manual(self) -> None:
        """A manual workflow advanced one step per `next`."""
        workflow_id = self.start("demo-manual", auto_start=False)
        self.catch_up([workflow_id])
        for _ in range(4):
            answer = self.client.call("POST", f"/workflow/{workflow_id}/next")
            self.catch_up([workflow_id])
            self.say(f"next -> workflow {workflow_id} is {answer['current_state']}")
        for workflow in self.follow([workflow_id]).values():
            self.summary(workflow)

    def concurrent(self) -> None:
        """Three workflows at once."""
        ids = [self.start(f"demo-concurrent-{n}") for n in (1, 2, 3)]
        for workflow in self.follow(ids).values():
            self.summary(workflow)

    def failure_and_retry(self) -> None:
        """A simulated failure, then retry."""
        workflow_id = self.start("demo-failure", config={"simulate_failure": True})
        self.follow([workflow_id])
        answer = self.client.call("POST", f"/workflow/{workflow_id}/retry")
        self.catch_up([workflow_id])
        self.say(f"retry {answer['retries']} -> {answer['current_state']}")
        for workflow in self.follow([workflow_id]).values():
            self.summary(workflow)

    def stats(self) -> None:
        """The execution stats."""
        stats = self.client.call("GET", "/execution/stats")
        pool = stats["worker_pool"]
        self.say(
            f"worker pool: {pool['active_tasks']} active of {pool['max_workers']}, "
            f"{pool['queue_size']} queued"
        )
        counts = ", ".join(f"{k} {v}" for k, v in stats["workflows"].items())
        self.say(f"workflows: {counts}")

    def play(self, number: int) -> None:
        """Print scene `number`'s heading (as the menu names it), then play it."""
        scene = SCENES[number - 1]
        self.heading(f"{number}. {scene.title}")
        scene.play(self)

    def run_all(self) -> None:
        """Every scene in order."""
        for number in range(1, len(SCENES) + 1):
            self.play(number)


@dataclass(frozen=True)
class Scene:
    """One scene of the demonstration: its title, shared by its heading and the menu."""

    title: str
    play: Callable[[Demo], None]


#: The scenes in order; scene n is "n. title" in its heading and "[n] title" in the menu.
SCENES: tuple[Scene, ...] = (
    Scene("Automatic workflow", Demo.automatic),
    Scene("Manual workflow step by step", Demo.manual),
    Scene("Three concurrent workflows", Demo.concurrent),
    Scene("Failure and retry", Demo.failure_and_retry),
    Scene("Execution stats", Demo.stats),
)

#: The menu's entry that plays every scene: key, label, and the words also accepted for it.
ALL_SCENES = ("a", "all scenes", ("all", "run all"))

#: The menu's other entries, in the same form.
COMMANDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ALL_SCENES,
    ("s", "start", ("start",)),
    ("m", "start manual", ("manual", "start manual")),
    ("n", "next", ("next",)),
    ("c", "cancel", ("cancel",)),
    ("w", "show", ("show",)),
    ("l", "list", ("list",)),
    ("q", "quit", ("quit", "exit")),
)


def menu_text(width: int = 100) -> str:
    """The interactive menu: the scenes by number, then the other commands by letter."""
    scenes = [f"[{n}] {scene.title}" for n, scene in enumerate(SCENES, 1)]
    sections = (
        ("scenes:   ", [*scenes, f"[{ALL_SCENES[0]}] {ALL_SCENES[1]}"]),
        ("commands: ", [f"[{key}] {label}" for key, label, _ in COMMANDS if key != "a"]),
    )
    lines: list[str] = []
    for title, entries in sections:
        # Entries are two spaces apart, and a line breaks only between entries.
        line, count = title, 0
        for entry in entries:
            if count and len(line) + 2 + len(entry) > width:
                lines.append(line)
                line, count = " " * len(title), 0
            line += ("  " if count else "") + entry
            count += 1
        lines.append(line)
    return "\n".join(lines)


def _command(choice: str) -> str | None:
    for key, _, words in COMMANDS:
        if choice == key or choice in words:
            return key
    return None


def interactive(demo: Demo, read: Callable[[str], str] = input) -> None:
    """The menu: each scene by its number, all scenes, start, next, cancel, show, list, quit."""
    while True:
        print("\n" + menu_text(), file=demo.out, flush=True)
        try:
            choice = read("> ").strip().lower()
        except EOFError:
            return
        command = _command(choice)
        try:
            if command == "q":
                return
            if choice.isdigit() and 1 <= int(choice) <= len(SCENES):
                demo.play(int(choice))
            elif command == "a":
                demo.run_all()
            elif command in ("s", "m"):
                default = "interactive" if command == "s" else "interactive-manual"
                name = read("name: ").strip() or default
                workflow_id = demo.start(name, auto_start=command == "s")
                demo.catch_up([workflow_id])
            elif command == "w":
                workflow_id = int(read("workflow id: "))
                demo.summary(demo.client.call("GET", f"/workflow/{workflow_id}"))
            elif command in ("n", "c"):
                workflow_id = int(read("workflow id: "))
                verb = "next" if command == "n" else "cancel"
                answer = demo.client.call("POST", f"/workflow/{workflow_id}/{verb}")
                demo.catch_up([workflow_id])
                demo.say(f"{verb} -> workflow {workflow_id} is {answer['current_state']}")
            elif command == "l":
                for workflow in demo.client.call("GET", "/workflows?limit=1000"):
                    demo.say(
                        f"{workflow['workflow_id']:>5}  {workflow['status']:<9}  {workflow['name']}"
                    )
            else:
                print(f"unknown choice {choice!r}", file=demo.out)
        except (ApiError, DidNotFinish) as exc:
            print(f"error: {exc}", file=demo.out)
        except ValueError:
            print("a workflow id is a positive integer", file=demo.out)


def run_demo(
    url: str, *, is_interactive: bool, out: TextIO = sys.stdout, token: str | None = None
) -> int:
    """Run the demo; 0 on success, 1 if the server cannot be reached or fails, 2 for a bad URL.

    `token`: sent as `Authorization: Bearer` (the first of API_TOKEN's tokens, if set).
    """
    try:
        base_url = normalize_url(url)
    except BadUrl as exc:
        print(f"orchestrator demo: {exc}", file=sys.stderr)
        return 2
    client = Client(base_url, token=token)
    try:
        client.call("GET", "/health")
    except (ServerUnreachable, ApiError) as exc:
        print(
            f"orchestrator demo: cannot reach the orchestrator at {base_url} ({exc}).\n"
            "Start it first, for example: orchestrator serve  (or: python -m orchestrator serve)",
            file=sys.stderr,
        )
        return 1
    demo = Demo(client, out)
    print(f"orchestrator demo against {base_url}; times are UTC", file=out, flush=True)
    try:
        if is_interactive:
            interactive(demo)
        else:
            demo.run_all()
            print("\ndemo finished", file=out)
    except (ServerUnreachable, ApiError, DidNotFinish) as exc:
        print(f"orchestrator demo: {exc}", file=sys.stderr)
        return 1
    return 0
