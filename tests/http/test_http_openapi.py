"""The OpenAPI document and the docs page: what is documented is what is served, and real answers
match their documented schemas.

Every endpoint of the table gets a real request that succeeds (the test first creates what it
needs); its answer is validated with jsonschema against the document (`$ref`s resolved through
the document's components) and decoded with msgspec into the endpoint's response type.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

import anyio
import httpx2
import msgspec
import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from starlette.types import Message, Scope

from orchestrator.http.dispatch import Endpoint
from orchestrator.http.endpoint_table import ENDPOINTS
from orchestrator.http.errors import ErrorBody
from orchestrator.http.response_types import EventOut

#: How long any wait here may take before it counts as a failure.
DEADLINE = 5.0
#: Routes that serve the documentation itself rather than the API.
DOCS_PATHS = frozenset({"/openapi.json", "/docs", "/docs/static", "/redoc", "/redoc/static"})
#: Routes for operators' tools, not the JSON API: /metrics speaks Prometheus's text format, and
#: the dashboard is a page (with its files) that uses the API, as the docs pages are.
OPERATIONS_PATHS = frozenset({"/metrics", "/ui", "/ui/static"})
DOCUMENT_URI = "urn:openapi"
EVENT_STREAM = "text/event-stream"


def key_of(endpoint: Endpoint) -> str:
    """`METHOD /path`, as the endpoint table and the document spell it."""
    return f"{endpoint.method} {endpoint.path}"


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    """GET /openapi.json."""
    response = client.get("/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def schema_validator(document: dict[str, Any], *pointer: str) -> Draft202012Validator:
    """A validator for the schema at `pointer` in the document, resolving its `$ref`s there."""
    registry: Registry[Any] = Registry().with_resource(
        DOCUMENT_URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    escaped = "/".join(
        quote(part.replace("~", "~0").replace("/", "~1"), safe="") for part in pointer
    )
    return Draft202012Validator(
        {"$ref": f"{DOCUMENT_URI}#/{escaped}"},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def schema_errors(validator: Draft202012Validator, instance: Any) -> list[str]:
    """Every way `instance` breaks the schema, as readable lines."""
    return [
        f"{list(error.absolute_path)}: {error.message}" for error in validator.iter_errors(instance)
    ]


# Reading an endless event stream ---------------------------------------------------------------


def first_frames(
    app: Starlette, client: TestClient, path: str, query: str = "", until: bytes = b"\ndata: "
) -> httpx2.Response:
    """GET an event stream until `until` arrives (by default, the first event's data), then
    disconnect, as a browser tab closing.

    TestClient waits for a response to end, and an event stream does not; so the request goes
    to the app directly, on the client's event loop where the app's runtime lives.
    """

    async def read() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        started: dict[str, Any] = {}
        body = bytearray()
        got_an_event = anyio.Event()
        request_sent = False

        async def receive() -> Message:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await got_an_event.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if until in body or not message.get("more_body", False):
                    got_an_event.set()

        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"accept", EVENT_STREAM.encode())],
            "client": ("testclient", 50000),
            "server": ("testserver", 80),
            "state": {},
        }
        with anyio.fail_after(DEADLINE):
            await app(scope, receive, send)
        return started["status"], started.get("headers", []), bytes(body)

    assert client.portal is not None
    status, headers, body = client.portal.call(read)
    decoded = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]
    return httpx2.Response(status, headers=decoded, content=body)


def event_data(body: bytes) -> list[bytes]:
    """The `data:` payloads of an event stream's frames."""
    return [
        line.removeprefix(b"data: ")
        for frame in body.split(b"\n\n")
        for line in frame.split(b"\n")
        if line.startswith(b"data: ")
    ]


# Scenarios: one real, successful request per endpoint ------------------------------------------


@dataclass
class Api:
    """The client plus ways to make the records a scenario needs."""

    app: Starlette
    client: TestClient
    settle: Callable[[int], dict[str, Any]]

    def post(self, path: str, body: dict[str, Any], id_field: str = "workflow_id") -> int:
        """POST and return the new record's id (201 checked)."""
        response = self.client.post(path, json=body)
        assert response.status_code == 201, response.text
        new_id = response.json()[id_field]
        assert isinstance(new_id, int)
        return new_id

    def finished_workflow(self) -> int:
        """A workflow that has run to COMPLETE."""
        workflow_id = self.post(
            "/workflow/start", {"name": "finished", "config": {"iterations": 3}}
        )
        assert self.settle(workflow_id)["status"] == "COMPLETE"
        return workflow_id

    def waiting_workflow(self) -> int:
        """A manual workflow waiting in INIT for `next`."""
        return self.post("/workflow/start", {"name": "waiting", "auto_start": False})

    def created_workflow(self) -> int:
        """A workflow created but not started."""
        return self.post("/workflows", {"name": "created", "config": {"k": 1}})

    def failed_workflow(self) -> int:
        """A workflow whose first task failed."""
        config = {"simulate_failure": True, "fail_until_retry": 1}
        workflow_id = self.post("/workflow/start", {"name": "failing", "config": config})
        assert self.settle(workflow_id)["status"] == "FAILED"
        return workflow_id

    def finished_task(self, workflow_id: int | None = None) -> int:
        """A compute task that has completed."""
        body = {"name": "sum", "task_type": "compute", "config": {"iterations": 10}}
        task_id = self.post("/tasks", {**body, "workflow_id": workflow_id}, "task_id")
        deadline = time.monotonic() + DEADLINE
        while (task := self.client.get(f"/tasks/{task_id}").json())["status"] != "completed":
            assert time.monotonic() < deadline, f"task {task_id} did not complete: {task}"
            time.sleep(0.005)  # poll interval; the deadline above bounds the wait
        return task_id


Scenario = Callable[[Api], list[httpx2.Response]]


def _workflow_reads(api: Api) -> list[httpx2.Response]:
    workflow_id = api.finished_workflow()
    return [
        api.client.get(f"/workflow/{workflow_id}"),
        api.client.get(f"/workflow/{workflow_id}?at_version=1"),
        api.client.get(f"/workflow/{workflow_id}?at_version=3"),
    ]


def _workflow_list(api: Api) -> list[httpx2.Response]:
    api.finished_workflow()
    api.created_workflow()
    return [api.client.get("/workflows"), api.client.get("/workflows?status_filter=COMPLETE")]


def _tasks_of_a_workflow(api: Api) -> list[httpx2.Response]:
    workflow_id = api.finished_workflow()
    api.finished_task(workflow_id)
    return [api.client.get(f"/workflows/{workflow_id}/tasks")]


def _task_list(api: Api) -> list[httpx2.Response]:
    workflow_id = api.created_workflow()
    api.finished_task(workflow_id)
    return [
        api.client.get("/tasks"),
        api.client.get(f"/tasks?status=completed&workflow_id={workflow_id}&limit=5"),
    ]


def _stats(api: Api) -> list[httpx2.Response]:
    api.finished_workflow()
    api.waiting_workflow()
    return [api.client.get("/execution/stats")]


def _activity(api: Api) -> list[httpx2.Response]:
    api.finished_workflow()
    return [
        api.client.get("/execution/activity"),
        api.client.get("/execution/activity?minutes=5"),
    ]


def _event_pages(api: Api) -> list[httpx2.Response]:
    workflow_id = api.finished_workflow()
    return [
        api.client.get("/events"),
        api.client.get(f"/events?stream=workflow-{workflow_id}&limit=3"),
        api.client.get("/events?type=WorkflowStarted"),
    ]


def _event_stream(api: Api) -> list[httpx2.Response]:
    api.finished_workflow()
    return [first_frames(api.app, api.client, "/events/stream", "after=0")]


SCENARIOS: dict[str, Scenario] = {
    "POST /workflow/start": lambda api: [
        api.client.post("/workflow/start", json={"name": "doc", "auto_start": False})
    ],
    "GET /workflow/{workflow_id}": _workflow_reads,
    "DELETE /workflow/{workflow_id}": lambda api: [
        api.client.delete(f"/workflow/{api.finished_workflow()}")
    ],
    "POST /workflow/{workflow_id}/next": lambda api: [
        api.client.post(f"/workflow/{api.waiting_workflow()}/next")
    ],
    "POST /workflow/{workflow_id}/retry": lambda api: [
        api.client.post(f"/workflow/{api.failed_workflow()}/retry")
    ],
    "POST /workflow/{workflow_id}/cancel": lambda api: [
        api.client.post(f"/workflow/{api.waiting_workflow()}/cancel")
    ],
    "POST /workflows": lambda api: [
        api.client.post("/workflows", json={"name": "doc", "description": "d", "config": {"a": 1}})
    ],
    "GET /workflows": _workflow_list,
    "GET /workflows/{workflow_id}": lambda api: [
        api.client.get(f"/workflows/{api.finished_workflow()}")
    ],
    "PUT /workflows/{workflow_id}": lambda api: [
        api.client.put(
            f"/workflows/{api.created_workflow()}",
            json={"name": "renamed", "description": None, "config": {"b": [1, 2]}},
        )
    ],
    "DELETE /workflows/{workflow_id}": lambda api: [
        api.client.delete(f"/workflows/{api.finished_workflow()}")
    ],
    "GET /workflows/{workflow_id}/tasks": _tasks_of_a_workflow,
    "GET /workflows/{workflow_id}/transitions": lambda api: [
        api.client.get(f"/workflows/{api.finished_workflow()}/transitions")
    ],
    "POST /tasks": lambda api: [
        api.client.post(
            "/tasks",
            json={
                "name": "nap",
                "task_type": "sleep",
                "config": {"duration": 0},
                "workflow_id": api.created_workflow(),
                "max_retries": 1,
            },
        )
    ],
    "GET /tasks": _task_list,
    "GET /tasks/{task_id}": lambda api: [api.client.get(f"/tasks/{api.finished_task()}")],
    "DELETE /tasks/{task_id}": lambda api: [api.client.delete(f"/tasks/{api.finished_task()}")],
    "POST /execution/workflows/{workflow_id}/start": lambda api: [
        api.client.post(f"/execution/workflows/{api.created_workflow()}/start")
    ],
    "GET /execution/workflows/{workflow_id}/status": lambda api: [
        api.client.get(f"/execution/workflows/{api.finished_workflow()}/status")
    ],
    "POST /execution/workflows/{workflow_id}/cancel": lambda api: [
        api.client.post(f"/execution/workflows/{api.waiting_workflow()}/cancel")
    ],
    "GET /execution/stats": _stats,
    "GET /execution/activity": _activity,
    "GET /": lambda api: [api.client.get("/")],
    "GET /health": lambda api: [api.client.get("/health")],
    "GET /state-machine": lambda api: [api.client.get("/state-machine")],
    "GET /workflow/{workflow_id}/events": lambda api: [
        api.client.get(f"/workflow/{api.finished_workflow()}/events")
    ],
    "GET /events": _event_pages,
    "GET /events/stream": _event_stream,
}


@pytest.fixture
def api(app: Starlette, client: TestClient, settle: Callable[[int], dict[str, Any]]) -> Api:
    """The scenarios' handle on the app."""
    return Api(app, client, settle)


# The document ----------------------------------------------------------------------------------


def test_the_document_is_openapi_3_1_with_info_paths_and_components(
    document: dict[str, Any],
) -> None:
    assert document["openapi"].startswith("3.1.")
    assert isinstance(document["info"]["title"], str) and document["info"]["title"]
    assert isinstance(document["info"]["version"], str) and document["info"]["version"]
    assert document["paths"]
    assert all(path.startswith("/") for path in document["paths"])
    assert "ErrorBody" in document["components"]["schemas"]


def test_every_ref_in_the_document_names_an_existing_component(document: dict[str, Any]) -> None:
    refs = list(all_refs(document))

    assert refs
    prefix = "#/components/schemas/"
    assert [ref for ref in refs if not ref.startswith(prefix)] == []
    missing = {
        ref for ref in refs if ref.removeprefix(prefix) not in document["components"]["schemas"]
    }
    assert missing == set()


def all_refs(node: Any) -> Iterator[str]:
    """Every `$ref` value anywhere under `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from all_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from all_refs(item)


def test_every_route_of_the_app_is_documented_with_the_same_methods(
    app: Starlette, document: dict[str, Any]
) -> None:
    served: dict[str, set[str]] = {}
    for route in app.routes:
        if isinstance(route, Mount | Route) and route.path in DOCS_PATHS | OPERATIONS_PATHS:
            continue
        assert isinstance(route, Route), f"undocumentable route {route!r}"
        # Starlette answers HEAD wherever it answers GET; the document lists GET only.
        served[route.path] = set(route.methods or ()) - {"HEAD"}

    documented = {
        path: {method.upper() for method in operations}
        for path, operations in document["paths"].items()
    }
    assert served == documented


def test_every_endpoint_of_the_table_is_documented(document: dict[str, Any]) -> None:
    documented = {
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method in operations
    }

    assert documented == {key_of(endpoint) for endpoint in ENDPOINTS}


def documented_operations() -> list[Any]:
    """(method, path) of every endpoint, as test parameters."""
    return [
        pytest.param(endpoint.method, endpoint.path, id=key_of(endpoint)) for endpoint in ENDPOINTS
    ]


@pytest.mark.parametrize(("method", "path"), documented_operations())
def test_every_documented_operation_is_served_and_answers_a_documented_status(
    app: Starlette, client: TestClient, document: dict[str, Any], method: str, path: str
) -> None:
    url = path.replace("{workflow_id}", "999").replace("{task_id}", "999")
    operation = document["paths"][path][method.lower()]
    if EVENT_STREAM in operation["responses"].get("200", {}).get("content", {}):
        response = first_frames(app, client, url, until=b"\n\n")  # the first frame will do
    else:
        response = client.request(method, url, json={} if "requestBody" in operation else None)

    assert response.status_code != 405, response.text
    assert "no route matches" not in response.text
    assert str(response.status_code) in operation["responses"], response.text
    assert response.status_code < 500


def test_operation_ids_are_present_and_unique(document: dict[str, Any]) -> None:
    ids = [
        operation.get("operationId")
        for operations in document["paths"].values()
        for operation in operations.values()
    ]

    assert all(isinstance(operation_id, str) and operation_id for operation_id in ids), ids
    assert len(set(ids)) == len(ids) == len(ENDPOINTS)


def test_every_operation_documents_a_2xx_response(document: dict[str, Any]) -> None:
    without_success = [
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if not any(status.startswith("2") for status in operation["responses"])
    ]

    assert without_success == []


# Real answers against their documented schemas -------------------------------------------------


def test_every_endpoint_has_a_scenario() -> None:
    assert set(SCENARIOS) == {key_of(endpoint) for endpoint in ENDPOINTS}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=key_of)
def test_a_real_answer_matches_its_documented_schema_and_response_type(
    api: Api, document: dict[str, Any], endpoint: Endpoint
) -> None:
    scenario = SCENARIOS.get(key_of(endpoint))
    assert scenario is not None, f"no scenario makes {key_of(endpoint)} succeed"

    responses = scenario(api)

    assert responses
    status = str(endpoint.status)
    documented = document["paths"][endpoint.path][endpoint.method.lower()]["responses"][status]
    for response in responses:
        assert response.status_code == endpoint.status, response.text
        if endpoint.status == 204:
            assert response.content == b""
            assert "content" not in documented
            continue
        media_type = response.headers["content-type"].split(";")[0]
        assert media_type in documented["content"], response.headers
        pointer = ("paths", endpoint.path, endpoint.method.lower(), "responses", status)
        validator = schema_validator(document, *pointer, "content", media_type, "schema")
        if media_type == EVENT_STREAM:
            assert_event_stream_matches(document, validator, response)
            continue
        assert schema_errors(validator, response.json()) == []
        msgspec.json.decode(response.content, type=endpoint.response)


def assert_event_stream_matches(
    document: dict[str, Any], validator: Draft202012Validator, response: httpx2.Response
) -> None:
    """The stream's text fits the documented schema and every frame's data is an EventOut."""
    assert schema_errors(validator, response.text) == []
    frames = event_data(response.content)
    assert frames, response.text
    event = schema_validator(document, "components", "schemas", "EventOut")
    for data in frames:
        assert schema_errors(event, msgspec.json.decode(data)) == []
        msgspec.json.decode(data, type=EventOut)


# Error answers ---------------------------------------------------------------------------------


ERROR_REQUESTS: list[tuple[str, str, bytes | None, int]] = [
    ("GET", "/workflow/999", None, 404),
    ("GET", "/workflow/abc", None, 422),
    ("POST", "/workflow/999/retry", None, 404),
    ("POST", "/workflows", b"{}", 422),
    ("POST", "/workflows", b"{", 422),
    ("POST", "/workflows", b'{"name": "big", "description": "' + b"d" * 1024 * 1024 + b'"}', 413),
    ("GET", "/workflows?limit=0", None, 422),
    ("GET", "/tasks/999", None, 404),
    ("DELETE", "/tasks/999", None, 404),
    ("GET", "/events?after=-1", None, 422),
    ("GET", "/nope", None, 404),
    ("PATCH", "/workflows", None, 405),
]


@pytest.mark.parametrize(
    ("method", "url", "content", "status"),
    ERROR_REQUESTS,
    ids=[f"{status} {method} {url[:40]}" for method, url, _, status in ERROR_REQUESTS],
)
def test_error_answers_match_the_error_body_schema(
    client: TestClient,
    document: dict[str, Any],
    method: str,
    url: str,
    content: bytes | None,
    status: int,
) -> None:
    response = client.request(method, url, content=content)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    validator = schema_validator(document, "components", "schemas", "ErrorBody")
    assert schema_errors(validator, response.json()) == []
    msgspec.json.decode(response.content, type=ErrorBody)


def test_conflicts_are_documented_and_match_the_error_body_schema(
    api: Api, document: dict[str, Any]
) -> None:
    workflow_id = api.finished_workflow()

    response = api.client.post(f"/workflow/{workflow_id}/next")

    assert response.status_code == 409, response.text
    documented = document["paths"]["/workflow/{workflow_id}/next"]["post"]["responses"]["409"]
    assert documented["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    validator = schema_validator(document, "components", "schemas", "ErrorBody")
    assert schema_errors(validator, response.json()) == []
    msgspec.json.decode(response.content, type=ErrorBody)


def test_every_documented_error_status_uses_the_error_body_schema(document: dict[str, Any]) -> None:
    error_schemas = [
        (f"{method.upper()} {path} {status}", answer.get("content"))
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status, answer in operation["responses"].items()
        if status.startswith(("4", "5"))
    ]

    assert error_schemas
    expected = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    assert [label for label, content in error_schemas if content != expected] == []


# The docs page ---------------------------------------------------------------------------------


class AssetLinks(HTMLParser):
    """The URLs a page loads through <script src> and <link href> (stylesheets among them)."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.links: list[str] = []
        self.stylesheets: list[str] = []
        self.attributes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Collect script and link URLs, and every attribute value of those tags."""
        values = {name: value or "" for name, value in attrs}
        if tag == "script":
            self.attributes += values.values()
            if "src" in values:
                self.scripts.append(values["src"])
        elif tag == "link":
            self.attributes += values.values()
            if "href" in values:
                self.links.append(values["href"])
                if values.get("rel") == "stylesheet":
                    self.stylesheets.append(values["href"])


@pytest.fixture(params=["/docs", "/redoc"])
def docs_page(request: pytest.FixtureRequest, client: TestClient) -> AssetLinks:
    """GET /docs (Swagger UI) and GET /redoc (ReDoc), parsed."""
    response = client.get(request.param)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    page = AssetLinks()
    page.feed(response.text)
    return page


def test_the_docs_page_loads_only_local_assets(docs_page: AssetLinks) -> None:
    assert docs_page.scripts
    assert docs_page.links
    remote = [value for value in docs_page.attributes if "http://" in value or "https://" in value]
    assert remote == []
    assets = docs_page.scripts + docs_page.links
    assert [url for url in assets if not url.startswith(("/docs/static/", "/redoc/static/"))] == []


@pytest.mark.parametrize(
    ("path", "reads_the_document"),
    [("/docs", 'url: "/openapi.json"'), ("/redoc", 'Redoc.init("/openapi.json"')],
)
def test_the_docs_page_reads_the_local_document_and_names_no_remote_url(
    client: TestClient, path: str, reads_the_document: str
) -> None:
    page = client.get(path).text

    assert reads_the_document in page
    assert "http://" not in page
    assert "https://" not in page


def test_the_docs_assets_are_served_as_javascript_css_and_images(
    client: TestClient, docs_page: AssetLinks
) -> None:
    answers = {url: client.get(url) for url in docs_page.scripts + docs_page.links}

    for url, response in answers.items():
        assert response.status_code == 200, url
        assert response.content, url
        content_type = response.headers["content-type"]
        if url in docs_page.scripts:
            assert content_type.startswith(("text/javascript", "application/javascript")), url
        elif url in docs_page.stylesheets:
            assert content_type.startswith("text/css"), url
        else:  # the icon
            assert content_type.startswith("image/"), url
