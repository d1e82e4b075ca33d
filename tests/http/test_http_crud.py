"""The CRUD routes: create without starting, list with paging and filters, edit, delete, and reads.

`POST /workflows` makes a workflow that waits in INIT until `POST /execution/workflows/{id}/start`;
`PUT /workflows/{id}` edits it (an event of its own) except mid-run; `DELETE /workflows/{id}` takes
it out of every read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from unittest.mock import ANY

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from orchestrator.domain.states import State
from orchestrator.engine.tasks import TaskFunction, TaskRegistry
from tests.http.engine_waits import wait_until_idle

DEADLINE = 5.0
#: How long a created workflow is watched to see that it does not start by itself.
QUIET_PERIOD = 0.2
FORWARD = [
    ("INIT", "PREPARE", "prepare"),
    ("PREPARE", "EXECUTE", "execute"),
    ("EXECUTE", "VALIDATE", "validate"),
    ("VALIDATE", "COMPLETE", "complete"),
]
CREATED_ACTIONS = ["start", "next", "edit", "cancel", "delete"]


def create(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    """POST /workflows, check the 201, and return the workflow it answers with."""
    response = client.post("/workflows", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def launch(client: TestClient, workflow_id: int) -> None:
    """POST /execution/workflows/{id}/start and check it was accepted."""
    response = client.post(f"/execution/workflows/{workflow_id}/start")
    assert response.status_code == 200, response.text


def read(client: TestClient, workflow_id: int) -> dict[str, Any]:
    """GET /workflows/{id}, checked to be a 200."""
    response = client.get(f"/workflows/{workflow_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def listed_ids(client: TestClient, query: str = "") -> list[int]:
    """The ids GET /workflows answers with for `query`."""
    response = client.get(f"/workflows{query}")
    assert response.status_code == 200, response.text
    return [workflow["workflow_id"] for workflow in response.json()]


def log_position(client: TestClient) -> int:
    """The head of the event log, as /health reports it."""
    position = client.get("/health").json()["log_position"]
    assert isinstance(position, int)
    return position


def triples(transitions: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Transitions as (from, to, trigger), for comparison with FORWARD."""
    return [(t["from_state"], t["to_state"], t["trigger"]) for t in transitions]


# POST /workflows -------------------------------------------------------------------------------


def test_create_answers_201_with_a_workflow_waiting_in_init(client: TestClient) -> None:
    response = client.post(
        "/workflows", json={"name": "report", "description": "weekly", "config": {"iterations": 7}}
    )

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "workflow_id": 1,
        "name": "report",
        "description": "weekly",
        "status": "INIT",
        "current_state": "INIT",
        "retries": 0,
        "started_at": None,
        "completed_at": None,
        "error_message": None,
        "next_trigger": "prepare",
        "created_at": ANY,
        "transitions": [],
        "task_results": {},
        "id": 1,
        "config": {"iterations": 7},
        "auto_start": False,
        "launched": False,
        "step_running": None,
        "allowed_actions": CREATED_ACTIONS,
        "version": 1,
        "updated_at": ANY,
        "current_step": None,
    }


def test_create_without_description_or_config_stores_null_and_an_empty_config(
    client: TestClient,
) -> None:
    created = create(client, {"name": "bare"})

    assert created["description"] is None
    assert created["config"] == {}


def test_a_created_workflow_does_not_run_by_itself(client: TestClient, app: Starlette) -> None:
    workflow_id = create(client, {"name": "patient"})["workflow_id"]
    position = log_position(client)

    deadline = time.monotonic() + QUIET_PERIOD
    while time.monotonic() < deadline:
        body = read(client, workflow_id)
        assert (body["status"], body["transitions"], body["step_running"]) == ("INIT", [], None)
        time.sleep(0.01)  # poll interval; QUIET_PERIOD bounds the loop
    wait_until_idle(client, app)

    body = read(client, workflow_id)
    assert body["status"] == "INIT"
    assert body["transitions"] == []
    assert body["task_results"] == {}
    assert body["launched"] is False
    assert log_position(client) == position


def test_a_created_workflow_reads_back_as_its_201_on_both_paths(client: TestClient) -> None:
    created = create(client, {"name": "twice", "config": {"a": [1, 2]}})
    workflow_id = created["workflow_id"]

    assert read(client, workflow_id) == created
    assert client.get(f"/workflow/{workflow_id}").json() == created


def test_created_workflows_get_increasing_ids(client: TestClient) -> None:
    ids = [create(client, {"name": f"w{n}"})["workflow_id"] for n in range(3)]

    assert ids == [1, 2, 3]


def test_a_created_workflow_with_an_empty_name_is_refused_and_not_stored(
    client: TestClient,
) -> None:
    response = client.post("/workflows", json={"name": ""})

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["detail"].startswith("invalid request body: ")
    assert "$.name" in body["detail"]
    assert listed_ids(client) == []


# GET /workflows --------------------------------------------------------------------------------


def test_the_list_holds_every_workflow_in_id_order(
    client: TestClient, start: Callable[[dict[str, Any]], int]
) -> None:
    first = create(client, {"name": "created"})["workflow_id"]
    second = start({"name": "manual", "auto_start": False})
    third = create(client, {"name": "created again"})["workflow_id"]

    response = client.get("/workflows")

    assert response.status_code == 200
    body = response.json()
    assert [w["workflow_id"] for w in body] == [first, second, third] == [1, 2, 3]
    assert [w["name"] for w in body] == ["created", "manual", "created again"]
    assert body[0] == read(client, first)


def test_an_empty_list_is_an_empty_array(client: TestClient) -> None:
    response = client.get("/workflows")

    assert response.status_code == 200
    assert response.json() == []


def test_skip_and_limit_page_through_the_list(client: TestClient) -> None:
    for number in range(7):
        create(client, {"name": f"w{number}"})

    pages = [listed_ids(client, f"?skip={skip}&limit=3") for skip in (0, 3, 6, 9)]

    assert pages == [[1, 2, 3], [4, 5, 6], [7], []]


def test_skip_alone_and_limit_alone_page_from_their_defaults(client: TestClient) -> None:
    for number in range(7):
        create(client, {"name": f"w{number}"})

    assert listed_ids(client, "?skip=5") == [6, 7]
    assert listed_ids(client, "?limit=2") == [1, 2]
    assert listed_ids(client, "?limit=1000") == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize(
    ("query", "field", "reason"),
    [
        ("limit=1001", "$.limit", "<= 1000"),
        ("limit=0", "$.limit", ">= 1"),
        ("limit=-5", "$.limit", ">= 1"),
        ("skip=-1", "$.skip", ">= 0"),
        ("skip=x", "$.skip", "Expected `int`, got `str`"),
        ("skip=1.5", "$.skip", "Expected `int`"),
        ("limit=ten", "$.limit", "Expected `int`, got `str`"),
    ],
    ids=[
        "limit-over-1000",
        "limit-zero",
        "limit-negative",
        "skip-negative",
        "skip-not-a-number",
        "skip-fraction",
        "limit-not-a-number",
    ],
)
def test_a_bad_paging_parameter_is_a_validation_error_naming_it(
    client: TestClient, query: str, field: str, reason: str
) -> None:
    response = client.get(f"/workflows?{query}")

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["detail"].startswith("invalid query parameter: ")
    assert field in body["detail"]
    assert reason in body["detail"]


def test_status_filter_lists_only_workflows_in_that_state(
    client: TestClient, settle: Callable[[int], dict[str, Any]]
) -> None:
    waiting = create(client, {"name": "waiting"})["workflow_id"]
    done = create(client, {"name": "done"})["workflow_id"]
    broken = create(client, {"name": "broken", "config": {"simulate_failure": True}})["workflow_id"]
    stopped = create(client, {"name": "stopped"})["workflow_id"]
    also_done = create(client, {"name": "also done"})["workflow_id"]
    for workflow_id in (done, broken, also_done):
        launch(client, workflow_id)
    assert client.post(f"/execution/workflows/{stopped}/cancel").status_code == 200
    assert [settle(w)["status"] for w in (done, broken, also_done)] == [
        "COMPLETE",
        "FAILED",
        "COMPLETE",
    ]

    assert listed_ids(client, "?status_filter=COMPLETE") == [done, also_done]
    assert listed_ids(client, "?status_filter=INIT") == [waiting]
    assert listed_ids(client, "?status_filter=FAILED") == [broken]
    assert listed_ids(client, "?status_filter=CANCELLED") == [stopped]
    assert listed_ids(client, "?status_filter=VALIDATE") == []
    assert listed_ids(client, "?status_filter=COMPLETE&skip=1&limit=1") == [also_done]


@pytest.mark.parametrize(
    "value", ["DONE", "COMPLETED", ""], ids=["unknown", "task-status", "empty"]
)
def test_an_unknown_status_filter_is_refused_naming_the_allowed_states(
    client: TestClient, value: str
) -> None:
    response = client.get("/workflows", params={"status_filter": value})

    assert response.status_code == 422
    assert response.json() == {
        "error": "validation_error",
        "detail": "status_filter must be one of INIT, PREPARE, EXECUTE, VALIDATE, COMPLETE, "
        f"FAILED, CANCELLED; got {value!r}",
    }


def test_deleted_workflows_disappear_from_the_list(
    client: TestClient, settle: Callable[[int], dict[str, Any]]
) -> None:
    ids = [create(client, {"name": f"w{n}"})["workflow_id"] for n in range(4)]
    launch(client, ids[2])
    assert settle(ids[2])["status"] == "COMPLETE"

    assert client.delete(f"/workflows/{ids[1]}").status_code == 204
    assert client.delete(f"/workflows/{ids[2]}").status_code == 204

    assert listed_ids(client) == [ids[0], ids[3]]
    assert listed_ids(client, "?status_filter=COMPLETE") == []
    assert listed_ids(client, "?skip=1&limit=1") == [ids[3]]


# PUT /workflows/{id} ---------------------------------------------------------------------------


def test_edit_changes_the_given_fields_and_keeps_the_rest(client: TestClient) -> None:
    created = create(client, {"name": "old", "description": "old text", "config": {"k": 1}})
    workflow_id = created["workflow_id"]

    renamed = client.put(f"/workflows/{workflow_id}", json={"name": "new"})
    assert renamed.status_code == 200
    assert (renamed.json()["name"], renamed.json()["description"], renamed.json()["config"]) == (
        "new",
        "old text",
        {"k": 1},
    )

    described = client.put(f"/workflows/{workflow_id}", json={"description": "new text"}).json()
    assert (described["name"], described["description"], described["config"]) == (
        "new",
        "new text",
        {"k": 1},
    )

    configured = client.put(f"/workflows/{workflow_id}", json={"config": {"k": 2, "x": "y"}})
    assert configured.status_code == 200
    body = configured.json()
    assert (body["name"], body["description"], body["config"]) == (
        "new",
        "new text",
        {"k": 2, "x": "y"},
    )
    assert read(client, workflow_id) == body
    assert body["status"] == "INIT"
    assert body["launched"] is False
    assert body["allowed_actions"] == CREATED_ACTIONS


def test_edit_of_all_three_fields_at_once(client: TestClient) -> None:
    workflow_id = create(client, {"name": "a", "description": "b", "config": {"c": 1}})["id"]

    response = client.put(
        f"/workflows/{workflow_id}",
        json={"name": "x", "description": "y", "config": {"z": [True, None]}},
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["description"], body["config"]) == ("x", "y", {"z": [True, None]})


def test_edit_with_a_null_description_clears_it(client: TestClient) -> None:
    workflow_id = create(client, {"name": "a", "description": "to be cleared"})["workflow_id"]

    body = client.put(f"/workflows/{workflow_id}", json={"description": None}).json()

    assert body["description"] is None
    assert body["name"] == "a"


def test_an_edit_is_recorded_as_one_event(client: TestClient) -> None:
    created = create(client, {"name": "versioned"})
    workflow_id = created["workflow_id"]
    position = log_position(client)

    edited = client.put(f"/workflows/{workflow_id}", json={"name": "versioned 2"}).json()

    assert edited["version"] == created["version"] + 1
    assert log_position(client) == position + 1
    assert datetime.fromisoformat(edited["updated_at"]) > datetime.fromisoformat(
        created["updated_at"]
    )
    again = client.put(f"/workflows/{workflow_id}", json={"name": "versioned 3"}).json()
    assert again["version"] == created["version"] + 2


def test_an_edited_config_is_what_the_run_uses(
    client: TestClient, settle: Callable[[int], dict[str, Any]]
) -> None:
    workflow_id = create(client, {"name": "tuned", "config": {"iterations": 100}})["workflow_id"]
    assert client.put(f"/workflows/{workflow_id}", json={"config": {"iterations": 10}}).is_success

    launch(client, workflow_id)
    body = settle(workflow_id)

    assert body["status"] == "COMPLETE"
    assert body["task_results"]["EXECUTE"]["iterations"] == 10
    assert body["task_results"]["EXECUTE"]["computation_result"] == sum(i * i for i in range(10))


def test_edit_while_a_step_runs_is_refused_naming_the_state(
    client: TestClient,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
    gate: threading.Event,
    settle: Callable[[int], dict[str, Any]],
) -> None:
    registry.register(State.INIT, blocking_task)
    created = create(client, {"name": "busy", "config": {"k": 1}})
    workflow_id = created["workflow_id"]
    launch(client, workflow_id)
    assert entered.wait(DEADLINE)
    before = read(client, workflow_id)

    response = client.put(f"/workflows/{workflow_id}", json={"name": "renamed", "config": {}})

    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is INIT; cannot edit; allowed: cancel (it is running)",
    }
    assert read(client, workflow_id)["version"] == before["version"]
    gate.set()
    finished = settle(workflow_id)
    assert finished["status"] == "COMPLETE"
    assert (finished["name"], finished["config"]) == ("busy", {"k": 1})


@pytest.mark.parametrize("state", ["PREPARE", "EXECUTE", "VALIDATE"])
def test_edit_of_a_manual_workflow_mid_run_is_refused(
    client: TestClient, start: Callable[[dict[str, Any]], int], state: str
) -> None:
    workflow_id = start({"name": "manual", "auto_start": False})
    while read(client, workflow_id)["status"] != state:
        assert client.post(f"/workflow/{workflow_id}/next").status_code == 200
    before = read(client, workflow_id)

    response = client.put(f"/workflows/{workflow_id}", json={"description": "late"})

    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is {state}; cannot edit; "
        "allowed: next, cancel (it is running)",
    }
    assert read(client, workflow_id) == before


def test_edit_of_a_manual_workflow_waiting_in_init_is_allowed(
    client: TestClient, start: Callable[[dict[str, Any]], int]
) -> None:
    workflow_id = start({"name": "manual", "auto_start": False})

    response = client.put(f"/workflows/{workflow_id}", json={"name": "renamed"})

    assert response.status_code == 200
    assert response.json()["name"] == "renamed"
    assert response.json()["status"] == "INIT"


@pytest.mark.parametrize(
    ("config", "action", "state"),
    [
        ({}, "start", "COMPLETE"),
        ({"simulate_failure": True}, "start", "FAILED"),
        ({}, "cancel", "CANCELLED"),
    ],
    ids=["complete", "failed", "cancelled"],
)
def test_edit_of_a_finished_workflow_is_allowed(
    client: TestClient,
    settle: Callable[[int], dict[str, Any]],
    config: dict[str, Any],
    action: str,
    state: str,
) -> None:
    workflow_id = create(client, {"name": "finished", "config": config})["workflow_id"]
    assert client.post(f"/execution/workflows/{workflow_id}/{action}").status_code == 200
    before = settle(workflow_id)
    assert before["status"] == state

    response = client.put(f"/workflows/{workflow_id}", json={"name": "renamed afterwards"})

    assert response.status_code == 200
    after = response.json()
    assert after["name"] == "renamed afterwards"
    assert after["version"] == before["version"] + 1
    assert {k: v for k, v in after.items() if k not in ("name", "version", "updated_at")} == {
        k: v for k, v in before.items() if k not in ("name", "version", "updated_at")
    }


def test_a_failed_workflow_edited_and_retried_completes(
    client: TestClient, settle: Callable[[int], dict[str, Any]]
) -> None:
    workflow_id = create(client, {"name": "flaky", "config": {"simulate_failure": True}})["id"]
    launch(client, workflow_id)
    assert settle(workflow_id)["status"] == "FAILED"

    assert client.put(f"/workflows/{workflow_id}", json={"config": {}}).status_code == 200
    assert client.post(f"/workflow/{workflow_id}/retry").status_code == 200
    body = settle(workflow_id)

    assert body["status"] == "COMPLETE"
    assert body["retries"] == 1
    assert body["config"] == {}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"name": ""}, "length >= 1"),
        ({"name": None}, "got `null`"),
        ({"name": "x" * 256}, "length <= 255"),
    ],
    ids=["empty", "null", "too-long"],
)
def test_edit_with_a_bad_name_is_a_validation_error_and_changes_nothing(
    client: TestClient, payload: dict[str, Any], reason: str
) -> None:
    created = create(client, {"name": "kept"})
    workflow_id = created["workflow_id"]

    response = client.put(f"/workflows/{workflow_id}", json=payload)

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["detail"].startswith("invalid request body: ")
    assert "$.name" in body["detail"]
    assert reason in body["detail"]
    assert read(client, workflow_id) == created


def test_edit_of_an_unknown_workflow_is_not_found(client: TestClient) -> None:
    response = client.put("/workflows/42", json={"name": "ghost"})

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "workflow 42 does not exist"}


# DELETE /workflows/{id} ------------------------------------------------------------------------


def test_a_created_workflow_that_never_started_may_be_deleted(client: TestClient) -> None:
    workflow_id = create(client, {"name": "unwanted"})["workflow_id"]

    response = client.delete(f"/workflows/{workflow_id}")

    assert response.status_code == 204
    assert response.content == b""
    gone = {"error": "not_found", "detail": f"workflow {workflow_id} does not exist"}
    for method, path in [
        ("GET", f"/workflows/{workflow_id}"),
        ("GET", f"/workflow/{workflow_id}"),
        ("GET", f"/workflows/{workflow_id}/transitions"),
        ("GET", f"/workflows/{workflow_id}/tasks"),
        ("GET", f"/execution/workflows/{workflow_id}/status"),
        ("POST", f"/execution/workflows/{workflow_id}/start"),
        ("POST", f"/execution/workflows/{workflow_id}/cancel"),
        ("DELETE", f"/workflows/{workflow_id}"),
    ]:
        answer = client.request(method, path)
        assert (method, path, answer.status_code, answer.json()) == (method, path, 404, gone)
    edit = client.put(f"/workflows/{workflow_id}", json={"name": "revived"})
    assert (edit.status_code, edit.json()) == (404, gone)


def test_a_deleted_created_workflow_leaves_the_stats(client: TestClient) -> None:
    workflow_id = create(client, {"name": "counted"})["workflow_id"]
    assert client.get("/execution/stats").json()["workflows"]["init"] == 1

    assert client.delete(f"/workflows/{workflow_id}").status_code == 204

    counts = client.get("/execution/stats").json()["workflows"]
    assert (counts["total"], counts["init"]) == (0, 0)


def test_a_running_workflow_cannot_be_deleted(
    client: TestClient,
    registry: TaskRegistry,
    blocking_task: TaskFunction,
    entered: threading.Event,
    gate: threading.Event,
    settle: Callable[[int], dict[str, Any]],
) -> None:
    registry.register(State.INIT, blocking_task)
    workflow_id = create(client, {"name": "running"})["workflow_id"]
    launch(client, workflow_id)
    assert entered.wait(DEADLINE)

    response = client.delete(f"/workflows/{workflow_id}")

    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is INIT; cannot delete; "
        "allowed: cancel (cancel it first)",
    }
    gate.set()
    assert settle(workflow_id)["status"] == "COMPLETE"
    assert client.delete(f"/workflows/{workflow_id}").status_code == 204


def test_a_created_workflow_advanced_by_next_cannot_be_deleted(client: TestClient) -> None:
    workflow_id = create(client, {"name": "stepped"})["workflow_id"]
    assert client.post(f"/workflow/{workflow_id}/next").status_code == 200

    response = client.delete(f"/workflows/{workflow_id}")

    assert response.status_code == 409
    assert response.json() == {
        "error": "invalid_transition",
        "detail": f"workflow {workflow_id} is PREPARE; cannot delete; "
        "allowed: next, cancel (cancel it first)",
    }
    assert read(client, workflow_id)["status"] == "PREPARE"


# GET /workflows/{id}/transitions and /tasks ----------------------------------------------------


def test_a_created_workflow_has_no_transitions(client: TestClient) -> None:
    workflow_id = create(client, {"name": "still"})["workflow_id"]

    response = client.get(f"/workflows/{workflow_id}/transitions")

    assert response.status_code == 200
    assert response.json() == []


def test_transitions_of_a_finished_run_are_the_forward_path_as_the_workflow_shows_them(
    client: TestClient, settle: Callable[[int], dict[str, Any]]
) -> None:
    workflow_id = create(client, {"name": "ran"})["workflow_id"]
    launch(client, workflow_id)
    body = settle(workflow_id)

    response = client.get(f"/workflows/{workflow_id}/transitions")

    assert response.status_code == 200
    transitions = response.json()
    assert triples(transitions) == FORWARD
    assert transitions == body["transitions"]
    for transition in transitions:
        assert transition["timestamp"] == transition["created_at"]


def test_transitions_record_a_failure_and_a_retry(
    client: TestClient, settle: Callable[[int], dict[str, Any]]
) -> None:
    workflow_id = create(client, {"name": "retried", "config": {"simulate_failure": True}})["id"]
    launch(client, workflow_id)
    settle(workflow_id)
    assert client.post(f"/workflow/{workflow_id}/retry").status_code == 200
    assert settle(workflow_id)["status"] == "COMPLETE"

    transitions = client.get(f"/workflows/{workflow_id}/transitions").json()

    assert triples(transitions) == [
        ("INIT", "FAILED", "fail"),
        ("FAILED", "INIT", "retry"),
        *FORWARD,
    ]


def test_tasks_of_a_workflow_are_only_the_standalone_tasks_attached_to_it(
    client: TestClient,
) -> None:
    mine = create(client, {"name": "mine"})["workflow_id"]
    other = create(client, {"name": "other"})["workflow_id"]
    assert client.get(f"/workflows/{mine}/tasks").json() == []
    task_ids: list[int] = []
    for workflow_id in (mine, other, None, mine):
        response = client.post(
            "/tasks",
            json={"name": "t", "task_type": "compute", "workflow_id": workflow_id},
        )
        assert response.status_code == 201, response.text
        task_ids.append(response.json()["task_id"])

    response = client.get(f"/workflows/{mine}/tasks")

    assert response.status_code == 200
    tasks = response.json()
    assert [t["task_id"] for t in tasks] == [task_ids[0], task_ids[3]]
    assert {t["workflow_id"] for t in tasks} == {mine}
    assert [t["task_id"] for t in client.get(f"/workflows/{other}/tasks").json()] == [task_ids[1]]


@pytest.mark.parametrize("suffix", ["transitions", "tasks"])
def test_transitions_and_tasks_of_an_unknown_workflow_are_not_found(
    client: TestClient, suffix: str
) -> None:
    response = client.get(f"/workflows/77/{suffix}")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "workflow 77 does not exist"}
