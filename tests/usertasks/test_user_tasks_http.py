"""User tasks as the API shows them: config checked against the declared Struct (422 naming
the field), the task types a server takes, the running step's progress in the workflow read,
/state-machine listing who runs where, and /openapi.json documenting the config schemas."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from starlette.testclient import TestClient

from orchestrator.domain.states import State
from orchestrator.http.app import create_app, runtime_of
from orchestrator.settings import Settings
from orchestrator.tasks import TaskContext, load_task_modules
from tests.http.conftest import quiesce
from tests.settings_for_tests import TESTCLIENT_HOSTS
from tests.waiting import wait_for


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def client(release: threading.Event) -> Iterator[TestClient]:
    """The app with the sample module's tasks, and a PREPARE that reports progress and holds
    until `release`."""
    registry = load_task_modules(["tests.usertasks.sample_tasks"])

    def reporting(ctx: TaskContext) -> dict[str, Any]:
        ctx.progress(0.25, "a quarter")
        release.wait(10)
        return {}

    registry.register(State.PREPARE, reporting, "reporting")
    settings = Settings(
        database_url="memory://", task_time_scale=0, log_file="", allowed_hosts=TESTCLIENT_HOSTS
    )
    app = create_app(settings, registry)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        try:
            yield test_client
        finally:
            release.set()
            assert test_client.portal is not None
            test_client.portal.call(quiesce, runtime_of(app))


def test_a_config_the_declared_struct_refuses_is_a_422_naming_the_field(client: TestClient) -> None:
    response = client.post("/workflow/start", json={"name": "w", "config": {"size": "big"}})

    assert response.status_code == 422
    assert response.json() == {
        "error": "validation_error",
        "detail": "config of task 'crunch': Expected `int`, got `str` - at `$.config.size`",
    }
    assert client.get("/workflows").json() == []


def test_the_running_step_shows_its_attempt_and_progress(
    client: TestClient, release: threading.Event
) -> None:
    workflow_id = client.post("/workflow/start", json={"name": "w"}).json()["workflow_id"]

    step = wait_for(
        lambda: client.get(f"/workflow/{workflow_id}").json()["current_step"],
        lambda s: s is not None and s["progress"] == 0.25,
        what="PREPARE's progress",
    )
    release.set()

    assert step["state"] == "PREPARE"
    assert step["task"] == "reporting"
    assert step["attempt"] == 1
    assert step["progress_note"] == "a quarter"
    assert step["next_attempt_at"] is None
    done = wait_for(
        lambda: client.get(f"/workflow/{workflow_id}").json(),
        lambda w: w["current_state"] == "COMPLETE" and w["current_step"] is None,
        what="the workflow to complete",
    )
    assert done["task_results"]["EXECUTE"]["result"] == {"total": 45, "attempt": 1}


def test_a_user_task_type_is_taken_with_its_default_retries(client: TestClient) -> None:
    response = client.post(
        "/tasks", json={"name": "t", "task_type": "resize", "config": {"width": 2, "height": 5}}
    )
    assert response.status_code == 201, response.text
    task_id = response.json()["id"]

    task = wait_for(
        lambda: client.get(f"/tasks/{task_id}").json(),
        lambda t: t["status"] == "completed",
        what="the resize task",
    )
    assert task["result"]["pixels"] == 10
    assert task["max_retries"] == 1


def test_a_user_task_types_config_and_an_unknown_type_are_422s(client: TestClient) -> None:
    bad_config = client.post(
        "/tasks", json={"name": "t", "task_type": "resize", "config": {"width": 2}}
    )
    unknown = client.post("/tasks", json={"name": "t", "task_type": "rotate"})

    assert bad_config.status_code == 422
    assert bad_config.json()["detail"] == (
        "config of task 'resize': Object missing required field `height` - at `$.config`"
    )
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == (
        "invalid request body: Invalid enum value 'rotate' - at `$.task_type`"
    )


def test_the_state_machine_lists_the_task_of_each_state_and_the_task_types(
    client: TestClient,
) -> None:
    machine = client.get("/state-machine").json()

    assert machine["tasks"] == {
        "INIT": "initialize",
        "PREPARE": "reporting",
        "EXECUTE": "crunch",
        "VALIDATE": "check",
        "COMPLETE": "finalize",
    }
    execute = next(row for row in machine["steps"] if row["state"] == "EXECUTE")
    assert execute == {
        "state": "EXECUTE",
        "task": "crunch",
        "source": "tests.usertasks.sample_tasks",
        "timeout": 30.0,
        "retries": 2,
        "is_async": False,
    }
    assert next(row for row in machine["steps"] if row["state"] == "VALIDATE")["is_async"]
    assert machine["task_types"] == ["compute", "http_request", "resize", "sleep"]


def test_openapi_documents_the_declared_configs_and_the_servers_task_types(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]

    assert schemas["Crunch"]["properties"]["size"]["type"] == "integer"
    start_config = schemas["StartWorkflowRequest"]["properties"]["config"]
    assert {"$ref": "#/components/schemas/Crunch"} in start_config["allOf"]
    task_body = schemas["CreateTaskRequest"]
    assert task_body["properties"]["task_type"]["enum"] == [
        "compute",
        "http_request",
        "resize",
        "sleep",
    ]
    # The document's own schema refuses what the API refuses.
    resolver = {"components": document["components"], **task_body}
    validator = jsonschema.Draft202012Validator(resolver)
    assert not validator.is_valid(
        {"name": "t", "task_type": "resize", "config": {"width": "wide", "height": 1}}
    )
    assert validator.is_valid(
        {"name": "t", "task_type": "resize", "config": {"width": 1, "height": 1}}
    )
