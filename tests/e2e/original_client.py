"""A client written against the original FastAPI orchestrator, run unmodified against this one.

It uses nothing of this project (only the standard library, as a user's script would) and
reads the answers the way the original's clients did: the demo client's worker wrapper in
`task_results` (`success`, `result`, `task_type`), the documented flat result beside it, the
original's transition rows (`id`, `workflow_id`, `transition_metadata`, `created_at`), the
list and create routes with their trailing slash (`/workflows/`, `/tasks/`), lower-case task
statuses with `pending` first, `status_filter`, `error_message` and the root's `message`.

Usage: python original_client.py BASE_URL. Prints one line per check and exits 0 when every
check passed, 1 (naming the check) otherwise.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from typing import Any

BASE = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8000"
TERMINAL = ("COMPLETE", "FAILED", "CANCELLED")


def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request as the original's clients sent it; (status, decoded JSON or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
        return response.status, json.loads(raw) if raw else None


def check(condition: bool, what: str) -> None:
    if not condition:
        print(f"FAILED: {what}")
        sys.exit(1)
    print(f"ok: {what}")


def wait_until(workflow_id: int, statuses: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        _, workflow = call("GET", f"/workflow/{workflow_id}")
        if workflow["status"] in statuses:
            return dict(workflow)
        if time.monotonic() > deadline:
            check(False, f"workflow {workflow_id} reached {statuses}: {workflow}")
        time.sleep(0.05)


def show_results(workflow: dict[str, Any]) -> None:
    """The original demo client's loop over task results."""
    for state, task_result in workflow["task_results"].items():
        check(task_result["success"] is True, f"{state} result reports success")
        check(isinstance(task_result["result"], dict), f"{state} wraps its result")
        check(isinstance(task_result["task_type"], str), f"{state} names its task type")
        print(f"    {state}: {task_result['task_type']} -> {task_result['result']}")


def main() -> None:
    status, root = call("GET", "/")
    check(status == 200 and isinstance(root["message"], str), "GET / carries a message")

    _, started = call(
        "POST", "/workflow/start", {"name": "demo-auto", "config": {"iterations": 10}}
    )
    check(started["message"] == "Workflow started", "POST /workflow/start")
    workflow = wait_until(started["workflow_id"], TERMINAL)
    check(workflow["status"] == "COMPLETE", "automatic workflow completes")
    check(isinstance(workflow["created_at"], str), "workflow has created_at")
    for transition in workflow["transitions"]:
        check(
            transition["workflow_id"] == workflow["workflow_id"]
            and isinstance(transition["id"], int)
            and isinstance(transition["transition_metadata"], dict)
            and transition["created_at"] == transition["timestamp"],
            f"transition {transition['from_state']} -> {transition['to_state']} as a row",
        )
    show_results(workflow)
    documented = workflow["task_results"]["PREPARE"]
    check(
        (documented["status"], documented["files_created"]) == ("prepared", 3),
        "the documented flat PREPARE result reads as before",
    )
    execute = workflow["task_results"]["EXECUTE"]["result"]
    check(execute["computation_result"] == sum(i * i for i in range(10)), "EXECUTE computed")

    _, manual = call("POST", "/workflow/start", {"name": "demo-manual", "auto_start": False})
    manual_id = manual["workflow_id"]
    for expected in ("PREPARE", "EXECUTE", "VALIDATE", "COMPLETE"):
        _, stepped = call("POST", f"/workflow/{manual_id}/next")
        check(stepped["current_state"] == expected, f"next moves the manual workflow to {expected}")

    _, flaky = call(
        "POST", "/workflow/start", {"name": "demo-flaky", "config": {"simulate_failure": True}}
    )
    failed = wait_until(flaky["workflow_id"], TERMINAL)
    check(failed["status"] == "FAILED" and bool(failed["error_message"]), "simulated failure")
    check(
        failed["transitions"][-1]["transition_metadata"].get("error") == failed["error_message"],
        "the fail transition's metadata carries the error",
    )
    _, retried = call("POST", f"/workflow/{flaky['workflow_id']}/retry")
    check(retried["retries"] == 1, "retry counts")
    check(wait_until(flaky["workflow_id"], TERMINAL)["status"] == "COMPLETE", "retry completes")

    status, created = call("POST", "/workflows/", {"name": "crud", "description": "made"})
    check(status == 201 and created["status"] == "INIT", "POST /workflows/ with its slash")
    check(isinstance(created["created_at"], str), "a created workflow has created_at")
    _, listed = call("GET", "/workflows/?status_filter=COMPLETE")
    check(
        {w["workflow_id"] for w in listed} >= {started["workflow_id"], manual_id},
        "GET /workflows/?status_filter=COMPLETE",
    )

    status, task = call(
        "POST", "/tasks/", {"name": "nap", "task_type": "sleep", "config": {"duration": 0.05}}
    )
    check(status == 201 and task["status"] == "pending", "POST /tasks/ answers pending")
    check("error_message" in task, "a task carries error_message")
    deadline = time.monotonic() + 15
    while (current := call("GET", f"/tasks/{task['id']}")[1])["status"] != "completed":
        check(time.monotonic() < deadline, f"task completes: {current}")
        time.sleep(0.05)
    check(current["started_at"] is not None, "a picked-up task has started_at")
    _, done = call("GET", "/tasks/?status_filter=completed")
    check(task["id"] in [t["id"] for t in done], "GET /tasks/?status_filter=completed")

    _, stats = call("GET", "/execution/stats")
    check(stats["workflows"]["complete"] >= 3, "execution stats count the completed workflows")
    print("ALL CHECKS PASSED")


if __name__ == "__main__":
    main()
