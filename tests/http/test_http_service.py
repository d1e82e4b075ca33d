"""Service routes and what every read and refusal tells a client: GET /, GET /state-machine,
`allowed_actions` on every workflow read, and 409s that name the state and the allowed actions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from orchestrator import __version__
from orchestrator.domain.states import State
from orchestrator.engine.tasks import TaskFunction, TaskRegistry

DEADLINE = 5.0
RUNNING = ("INIT", "PREPARE", "EXECUTE", "VALIDATE")

#: The transition table of DESIGN.md, one row per (from, trigger), in the table's order.
DESIGN_TABLE = [
    {"from_state": "INIT", "trigger": "prepare", "to_state": "PREPARE"},
    {"from_state": "PREPARE", "trigger": "execute", "to_state": "EXECUTE"},
    {"from_state": "EXECUTE", "trigger": "validate", "to_state": "VALIDATE"},
    {"from_state": "VALIDATE", "trigger": "complete", "to_state": "COMPLETE"},
    {"from_state": "INIT", "trigger": "fail", "to_state": "FAILED"},
    {"from_state": "PREPARE", "trigger": "fail", "to_state": "FAILED"},
    {"from_state": "EXECUTE", "trigger": "fail", "to_state": "FAILED"},
    {"from_state": "VALIDATE", "trigger": "fail", "to_state": "FAILED"},
    {"from_state": "INIT", "trigger": "cancel", "to_state": "CANCELLED"},
    {"from_state": "PREPARE", "trigger": "cancel", "to_state": "CANCELLED"},
    {"from_state": "EXECUTE", "trigger": "cancel", "to_state": "CANCELLED"},
    {"from_state": "VALIDATE", "trigger": "cancel", "to_state": "CANCELLED"},
    {"from_state": "FAILED", "trigger": "retry", "to_state": "INIT"},
]


def create(client: TestClient, body: dict[str, Any]) -> int:
    """POST /workflows, check the 201, and return the new workflow's id."""
    response = client.post("/workflows", json=body)
    assert response.status_code == 201, response.text
    workflow_id = response.json()["workflow_id"]
    assert isinstance(workflow_id, int)
    return workflow_id


def actions_on_every_read(client: TestClient, workflow_id: int) -> list[list[str]]:
    """`allowed_actions` as each workflow read reports it (detail, list, status), in that order."""
    detail = client.get(f"/workflow/{workflow_id}").json()
    crud = client.get(f"/workflows/{workflow_id}").json()
    listed = [w for w in client.get("/workflows").json() if w["workflow_id"] == workflow_id]
    status = client.get(f"/execution/workflows/{workflow_id}/status").json()
    assert len(listed) == 1
    return [
        detail["allowed_actions"],
        crud["allowed_actions"],
        listed[0]["allowed_actions"],
        status["allowed_actions"],
    ]


# GET / and GET /state-machine ------------------------------------------------------------------


def test_root_names_the_service_its_version_and_its_docs(client: TestClient) -> None:
    response = client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "message": "Workflow Orchestrator API",
        "name": "Workflow Orchestrator",
        "version": __version__,
        "docs": "/docs",
        "openapi": "/openapi.json",
        "health": "/health",
    }


def test_the_links_of_root_lead_somewhere(client: TestClient) -> None:
    links = client.get("/").json()

    for key in ("docs", "openapi", "health"):
        assert (key, client.get(links[key]).status_code) == (key, 200)


def test_the_state_machine_lists_states_and_triggers(client: TestClient) -> None:
    response = client.get("/state-machine")

    assert response.status_code == 200
    body = response.json()
    assert body["states"] == [
        "INIT",
        "PREPARE",
        "EXECUTE",
        "VALIDATE",
        "COMPLETE",
        "FAILED",
        "CANCELLED",
    ]
    assert body["triggers"] == [
        "prepare",
        "execute",
        "validate",
        "complete",
        "fail",
        "cancel",
        "retry",
    ]
    assert body["initial_state"] == "INIT"
    assert body["final_states"] == ["COMPLETE", "CANCELLED"]
    assert body["forward_triggers"] == {
        "INIT": "prepare",
        "PREPARE": "execute",
        "EXECUTE": "validate",
        "VALIDATE": "complete",
    }
    assert body["tasks"] == {
        "INIT": "initialize",
        "PREPARE": "prepare",
        "EXECUTE": "execute",
        "VALIDATE": "validate",
        "COMPLETE": "finalize",
    }


def test_the_state_machine_transitions_are_the_design_table(client: TestClient) -> None:
    transitions = client.get("/state-machine").json()["transitions"]

    assert transitions == DESIGN_TABLE


def test_the_state_machine_names_a_registered_task(
    client: TestClient, registry: TaskRegistry, blocking_task: TaskFunction
) -> None:
    registry.register(State.EXECUTE, blocking_task, name="crunch")

    assert client.get("/state-machine").json()["tasks"]["EXECUTE"] == "crunch"


# allowed_actions -------------------------------------------------------------------------------


def test_a_created_workflow_offers_the_same_actions_on_every_read(client: TestClient) -> None:
    response = client.post("/workflows", json={"name": "fresh"})
    workflow_id = response.json()["workflow_id"]
    expected = ["start", "next", "edit", "cancel", "delete"]

    assert response.json()["allowed_actions"] == expected
    assert actions_on_every_read(client, workflow_id) == [expected] * 4
    edited = client.put(f"/workflows/{workflow_id}", json={"name": "renamed"}).json()
    assert edited["allowed_actions"] == expected


def test_a_manual_workflow_offers_next_and_cancel_in_each_running_state(
    client: TestClient, start: Callable[[dict[str, Any]], int]
) -> None:
    workflow_id = start({"name": "manual", "auto_start": False})

    assert actions_on_every_read(client, workflow_id) == [["next", "edit", "cancel"]] * 4
    for _ in RUNNING:
        assert client.post(f"/workflow/{workflow_id}/next").status_code == 200
        state = client.get(f"/workflows/{workflow_id}").json()["status"]
        expected = ["next", "cancel"] if state in RUNNING else ["edit", "delete"]
        assert (state, actions_on_every_read(client, workflow_id)) == (state, [expected] * 4)
    assert state == "COMPLETE"


def test_a_running_step_leaves_only_cancel(
    client: TestClient,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
    start: Callable[[dict[str, Any]], int],
) -> None:
    registry.register(State.PREPARE, blocking_task)
    workflow_id = start({"name": "busy"})
    assert entered.wait(DEADLINE)

    assert actions_on_every_read(client, workflow_id) == [["cancel"]] * 4


@pytest.mark.parametrize(
    ("config", "action", "expected"),
    [
        ({}, "start", ["edit", "delete"]),
        ({"simulate_failure": True}, "start", ["retry", "edit", "delete"]),
        ({}, "cancel", ["edit", "delete"]),
    ],
    ids=["complete", "failed", "cancelled"],
)
def test_a_finished_workflow_offers_its_actions_on_every_read(
    client: TestClient,
    settle: Callable[[int], dict[str, Any]],
    config: dict[str, Any],
    action: str,
    expected: list[str],
) -> None:
    workflow_id = create(client, {"name": "finished", "config": config})
    assert client.post(f"/execution/workflows/{workflow_id}/{action}").status_code == 200
    settle(workflow_id)

    assert actions_on_every_read(client, workflow_id) == [expected] * 4


def test_every_listed_workflow_carries_its_allowed_actions(
    client: TestClient, start: Callable[[dict[str, Any]], int]
) -> None:
    create(client, {"name": "created"})
    start({"name": "manual", "auto_start": False})
    cancelled = create(client, {"name": "cancelled"})
    client.post(f"/execution/workflows/{cancelled}/cancel")

    listed = client.get("/workflows").json()

    assert [w["allowed_actions"] for w in listed] == [
        ["start", "next", "edit", "cancel", "delete"],
        ["next", "edit", "cancel"],
        ["edit", "delete"],
    ]


# 409s ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "action", "finished"),
    [
        ("POST", "/workflow/{id}/retry", "retry", True),
        ("POST", "/execution/workflows/{id}/start", "start", True),
        ("POST", "/execution/workflows/{id}/cancel", "cancel", True),
        ("POST", "/workflow/{id}/next", "next", True),
        ("DELETE", "/workflows/{id}", "delete", False),
        ("POST", "/workflow/{id}/retry", "retry", False),
        ("POST", "/execution/workflows/{id}/start", "start", False),
    ],
    ids=[
        "retry-complete",
        "start-complete",
        "cancel-complete",
        "next-complete",
        "delete-prepare",
        "retry-prepare",
        "start-prepare",
    ],
)
def test_a_409_names_the_current_state_and_what_is_allowed(
    client: TestClient,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
    method: str,
    path: str,
    action: str,
    finished: bool,
) -> None:
    if finished:
        workflow_id = start({"name": "done"})
        assert settle(workflow_id)["status"] == "COMPLETE"
    else:
        workflow_id = start({"name": "manual", "auto_start": False})
        assert client.post(f"/workflow/{workflow_id}/next").status_code == 200
    body = client.get(f"/workflows/{workflow_id}").json()

    response = client.request(method, path.format(id=workflow_id))

    assert response.status_code == 409
    error = response.json()
    assert error["error"] == "invalid_transition"
    allowed = ", ".join(body["allowed_actions"])
    assert error["detail"].startswith(
        f"workflow {workflow_id} is {body['status']}; cannot {action}; allowed: {allowed}"
    )
    assert action not in body["allowed_actions"]
    assert client.get(f"/workflows/{workflow_id}").json() == body


def test_a_409_lists_exactly_the_actions_the_workflow_read_offers(client: TestClient) -> None:
    workflow_id = create(client, {"name": "fresh"})

    response = client.post(f"/workflow/{workflow_id}/retry")

    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is INIT; cannot retry; "
        "allowed: start, next, edit, cancel, delete",
    }
