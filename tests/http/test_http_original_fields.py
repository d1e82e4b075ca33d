"""The original service's fields and forms: created_at, transition rows, task statuses as the
original spelled them (pending until a worker picks the task up), status_filter, trailing
slashes answered directly, CORS only for configured origins."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from orchestrator.http.app import create_app
from orchestrator.settings import Settings
from tests.http.conftest import DEADLINE
from tests.settings_for_tests import TESTCLIENT_HOSTS
from tests.waiting import wait_for

Json = dict[str, Any]


def wait_for_status(client: TestClient, path: str, status: str) -> Json:
    """Poll `path` until its `status` is `status`; return that body."""
    body: Json = wait_for(
        lambda: client.get(path).json(),
        lambda body: bool(body["status"] == status),
        what=f"{path} to reach {status}",
        timeout=DEADLINE,
        interval=0.005,
    )
    return dict(body)


def test_every_workflow_read_carries_created_at(
    client: TestClient,
    start: Callable[[Json], int],
    settle: Callable[[int], Json],
) -> None:
    started = settle(start({"name": "auto"}))
    created = client.post("/workflows", json={"name": "waits"}).json()
    edited = client.put(f"/workflows/{created['workflow_id']}", json={"name": "renamed"}).json()

    assert started["created_at"] == started["started_at"]
    assert created["created_at"] is not None and created["started_at"] is None
    assert edited["created_at"] == created["created_at"]
    listed = {w["workflow_id"]: w for w in client.get("/workflows").json()}
    assert listed[created["workflow_id"]]["created_at"] == created["created_at"]
    one = client.get(f"/workflows/{started['workflow_id']}").json()
    assert one["created_at"] == started["created_at"]


def test_transitions_are_rows_with_the_event_version_as_id_and_the_error_in_metadata(
    client: TestClient, start: Callable[[Json], int], settle: Callable[[int], Json]
) -> None:
    workflow_id = start({"name": "flaky", "config": {"simulate_failure": True}})
    failed = settle(workflow_id)
    events = client.get(f"/workflow/{workflow_id}/events").json()

    versions = [e["version"] for e in events if e["type"] == "WorkflowTransitioned"]
    assert [t["id"] for t in failed["transitions"]] == versions
    [fail] = failed["transitions"]
    assert fail == {
        "id": versions[0],
        "workflow_id": workflow_id,
        "from_state": "INIT",
        "to_state": "FAILED",
        "trigger": "fail",
        "transition_metadata": {"version": versions[0], "error": failed["error_message"]},
        "timestamp": fail["created_at"],
        "created_at": fail["timestamp"],
    }
    assert client.get(f"/workflows/{workflow_id}/transitions").json() == failed["transitions"]


@pytest.fixture
def settings() -> Settings:
    """One task worker, so a second task has to wait in the queue."""
    return Settings(
        database_url="memory://",
        task_time_scale=0,
        log_file="",
        task_workers=1,
        allowed_hosts=TESTCLIENT_HOSTS,
    )


@pytest.fixture
def occupied(client: TestClient, gate: threading.Event) -> Iterator[int]:
    """A `sleep` task holding the only worker until `gate` is set; its id."""
    from orchestrator.engine import task_types

    original = task_types.TASK_TYPES["sleep"]

    def held(config: dict[str, Any]) -> task_types.TaskWork:
        def work() -> dict[str, Any]:
            gate.wait(10)
            return {"status": "slept"}

        return work

    task_types.TASK_TYPES["sleep"] = held
    try:
        task_id = client.post("/tasks", json={"name": "hog", "task_type": "sleep"}).json()["id"]
        wait_for_status(client, f"/tasks/{task_id}", "running")
        yield task_id
    finally:
        gate.set()
        task_types.TASK_TYPES["sleep"] = original


def test_a_task_is_pending_with_no_start_time_until_a_worker_picks_it_up(
    client: TestClient, occupied: int, gate: threading.Event
) -> None:
    created = client.post("/tasks/", json={"name": "queued", "task_type": "compute"})

    assert created.status_code == 201
    queued = created.json()
    assert (queued["status"], queued["started_at"]) == ("pending", None)
    time.sleep(0.05)  # the only worker is busy: nothing may pick the task up meanwhile
    assert client.get(f"/tasks/{queued['id']}").json()["status"] == "pending"
    assert [t["id"] for t in client.get("/tasks?status=PENDING").json()] == [queued["id"]]

    gate.set()
    done = wait_for_status(client, f"/tasks/{queued['id']}", "completed")
    assert done["started_at"] is not None
    assert done["created_at"] <= done["started_at"] <= done["completed_at"]
    assert done["error_message"] is None


@pytest.mark.parametrize(
    "query", ["status=completed", "status_filter=completed", "status=Completed"]
)
def test_tasks_filter_by_status_or_status_filter_in_any_case(
    client: TestClient, query: str
) -> None:
    task_id = client.post("/tasks", json={"name": "sum", "task_type": "compute"}).json()["id"]
    wait_for_status(client, f"/tasks/{task_id}", "completed")

    assert [t["id"] for t in client.get(f"/tasks?{query}").json()] == [task_id]
    assert client.get("/tasks?status_filter=failed").json() == []


def test_a_failed_task_carries_its_error_as_error_message_too(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.engine import task_types

    def broken(config: dict[str, Any]) -> task_types.TaskWork:
        def work() -> dict[str, Any]:
            raise RuntimeError("disk on fire")

        return work

    monkeypatch.setitem(task_types.TASK_TYPES, "compute", broken)
    task_id = client.post("/tasks", json={"name": "x", "task_type": "compute"}).json()["id"]

    failed = wait_for_status(client, f"/tasks/{task_id}", "failed")
    assert failed["error"] == failed["error_message"] == "RuntimeError: disk on fire"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/workflows/", {"name": "slash"}, 201),
        ("GET", "/workflows/", None, 200),
        ("POST", "/tasks/", {"name": "slash", "task_type": "compute"}, 201),
        ("GET", "/tasks/", None, 200),
        ("GET", "/execution/stats/", None, 200),
        ("GET", "/health/", None, 200),
        ("GET", "/state-machine/", None, 200),
        ("GET", "/workflow/1/", None, 404),
        ("POST", "/workflow/start/", {"name": "slash"}, 201),
    ],
)
def test_routes_answer_with_a_trailing_slash_directly(
    client: TestClient, method: str, path: str, body: Json | None, status: int
) -> None:
    response = client.request(method, path, json=body, follow_redirects=False)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"


def test_root_carries_a_message(client: TestClient) -> None:
    assert client.get("/").json()["message"] == "Workflow Orchestrator API"


def cors_app(origins: tuple[str, ...]) -> Starlette:
    return create_app(
        Settings(
            database_url="memory://",
            task_time_scale=0,
            log_file="",
            cors_origins=origins,
            allowed_hosts=TESTCLIENT_HOSTS,
        )
    )


def preflight(client: TestClient, origin: str) -> Any:
    return client.options(
        "/workflow/start",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )


def test_cors_is_closed_unless_origins_are_configured() -> None:
    with TestClient(cors_app(())) as client:
        answer = preflight(client, "https://app.example.com")
        read = client.get("/", headers={"Origin": "https://app.example.com"})

    assert "access-control-allow-origin" not in answer.headers
    assert "access-control-allow-origin" not in read.headers


def test_cors_allows_only_the_configured_origins() -> None:
    with TestClient(cors_app(("https://app.example.com",))) as client:
        allowed = preflight(client, "https://app.example.com")
        other = preflight(client, "https://evil.example.net")
        read = client.get("/", headers={"Origin": "https://app.example.com"})

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    assert read.headers["access-control-allow-origin"] == "https://app.example.com"
