"""The `http_request` task type: real requests to a local server, guarded by an allow-list.

The upstream is a `ThreadingHTTPServer` on 127.0.0.1 with a free port; the allow-list names it
as `127.0.0.1:<port>` only, so `localhost:<port>` (the same server) counts as another host.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest.mock import ANY

import pytest
from starlette.testclient import TestClient

from orchestrator.settings import Settings
from tests.settings_for_tests import TESTCLIENT_HOSTS

DEADLINE = 5.0
#: How long the slow endpoint waits if teardown never releases it.
BACKSTOP = 10.0
#: HTTP_TASK_MAX_RESPONSE_BYTES in these tests, and the size of the big body above it.
LIMIT = 1000
BIG = 20_000
MAX_TIMEOUT = 5.0
FINISHED = frozenset({"completed", "failed", "cancelled"})
JSON_BODY = '{"hello": "world", "n": [1, 2]}'
DISABLED = (
    "task_type http_request is disabled until HTTP_TASK_ALLOWED_HOSTS lists the hosts it may call"
)


class Upstream(ThreadingHTTPServer):
    """The server the tasks call; `release` lets the slow endpoint answer."""

    daemon_threads = False  # so server_close() joins every handler thread

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.release = threading.Event()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


class Handler(BaseHTTPRequestHandler):
    """Answers by path: JSON, text, a big body, redirects, errors, a slow answer, an echo."""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output quiet

    def do_GET(self) -> None:
        upstream = self.server
        assert isinstance(upstream, Upstream)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        text = "text/plain; charset=utf-8"
        answers: dict[str, tuple[int, bytes, str, dict[str, str]]] = {
            "/json": (200, JSON_BODY.encode(), "application/json", {}),
            "/text": (200, "plain text: déjà vu".encode(), text, {}),
            "/bad-utf8": (200, b"ok \xff end", text, {}),
            "/not-json": (200, b"{not json", "application/json; charset=utf-8", {}),
            "/big": (200, b"x" * BIG, text, {}),
            "/redirect": (302, b"", text, {"Location": "/json"}),
            "/redirect-post": (307, b"", text, {"Location": upstream.url("/echo")}),
            "/elsewhere": (302, b"", text, {"Location": upstream.url("/json", "localhost")}),
            "/loop": (302, b"", text, {"Location": "/loop"}),
            "/fail": (500, b'{"error": "boom"}', "application/json", {}),
            "/missing": (404, b"no such thing", text, {}),
        }
        if self.path == "/slow":
            upstream.release.wait(BACKSTOP)
            self.answer(200, b"late", text, {})
        elif self.path == "/echo":
            echo = {
                "method": self.command,
                "headers": {key.lower(): value for key, value in self.headers.items()},
                "body": body.decode(),
            }
            self.answer(200, json.dumps(echo).encode(), "application/json", {})
        else:
            self.answer(*answers[self.path])

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def answer(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing left to answer


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """The upstream server, running in a thread; closed, with its handlers, at teardown."""
    server = Upstream()
    # A short poll interval: shutdown() waits up to one interval for the loop to notice.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="upstream"
    )
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def allowed_hosts(upstream: Upstream, closed_port: int) -> tuple[str, ...]:
    return (f"127.0.0.1:{upstream.port}", f"127.0.0.1:{closed_port}")


@pytest.fixture
def task_timeout() -> float:
    return 300.0


@pytest.fixture
def settings(allowed_hosts: tuple[str, ...], task_timeout: float) -> Settings:
    return Settings(
        database_url="memory://",
        task_time_scale=0,
        log_file="",
        task_timeout=task_timeout,
        http_task_allowed_hosts=allowed_hosts,
        http_task_max_response_bytes=LIMIT,
        http_task_max_timeout=MAX_TIMEOUT,
        allowed_hosts=TESTCLIENT_HOSTS,
    )


def run_task(client: TestClient, config: dict[str, Any]) -> dict[str, Any]:
    """Create an http_request task, wait until it has finished, and return it."""
    response = client.post("/tasks", json={"name": "call", "task_type": "http_request", **config})
    assert response.status_code == 201, response.text
    task_id = response.json()["task_id"]
    deadline = time.monotonic() + DEADLINE
    while True:
        body: dict[str, Any] = client.get(f"/tasks/{task_id}").json()
        if body["status"].lower() in FINISHED:
            return body
        if time.monotonic() > deadline:
            pytest.fail(f"task {task_id} did not finish in {DEADLINE} s: {body}")
        time.sleep(0.005)  # poll interval; the deadline above bounds the wait


def request(client: TestClient, **config: Any) -> dict[str, Any]:
    """Run a task with this config; return its result, failing if the task did not complete."""
    task = run_task(client, {"config": config})
    assert task["status"].lower() == "completed", task
    result: dict[str, Any] = task["result"]
    return result


def failure(client: TestClient, **config: Any) -> str:
    """Run a task with this config; return its error, failing if the task did not fail."""
    task = run_task(client, {"config": config})
    assert (task["status"].lower(), task["result"]) == ("failed", None), task
    error: str = task["error"]
    return error


# Answers -----------------------------------------------------------------------------------------


def test_a_json_answer_completes_with_status_headers_body_and_parsed_json(
    client: TestClient, upstream: Upstream
) -> None:
    result = request(client, url=upstream.url("/json"))

    assert result == {
        "status": "requested",
        "method": "GET",
        "url": upstream.url("/json"),
        "status_code": 200,
        "headers": ANY,
        "body": JSON_BODY,
        "json": {"hello": "world", "n": [1, 2]},
        "truncated": False,
        "redirects": 0,
        "elapsed_ms": ANY,
    }
    assert result["headers"]["content-type"] == "application/json"
    assert result["headers"]["content-length"] == str(len(JSON_BODY))
    assert isinstance(result["elapsed_ms"], float)
    assert 0 <= result["elapsed_ms"] < DEADLINE * 1000


@pytest.mark.parametrize(
    ("path", "body"),
    [("/text", "plain text: déjà vu"), ("/bad-utf8", "ok \ufffd end"), ("/not-json", "{not json")],
)
def test_a_text_answer_is_decoded_as_utf8_with_replacement_and_has_no_json(
    client: TestClient, upstream: Upstream, path: str, body: str
) -> None:
    result = request(client, url=upstream.url(path))

    assert (result["status_code"], result["body"], result["truncated"]) == (200, body, False)
    assert "json" not in result


def test_a_body_over_the_limit_is_cut_at_the_limit_and_marked_truncated(
    client: TestClient, upstream: Upstream
) -> None:
    result = request(client, url=upstream.url("/big"))

    assert result["truncated"] is True
    assert len(result["body"]) == LIMIT
    assert result["body"] == "x" * LIMIT
    assert result["headers"]["content-length"] == str(BIG)


def test_a_head_request_is_made_with_the_method_in_any_case(
    client: TestClient, upstream: Upstream
) -> None:
    result = request(client, url=upstream.url("/json"), method="head")

    assert (result["method"], result["status_code"], result["body"]) == ("HEAD", 200, "")
    assert "json" not in result  # an empty body does not parse


def test_headers_and_a_json_body_are_sent(client: TestClient, upstream: Upstream) -> None:
    result = request(
        client,
        url=upstream.url("/echo"),
        method="PUT",
        headers={"X-Token": "secret"},
        json={"a": [1, None]},
    )

    echo = result["json"]
    assert (echo["method"], echo["body"]) == ("PUT", '{"a":[1,null]}')
    assert echo["headers"]["x-token"] == "secret"
    assert echo["headers"]["content-type"] == "application/json"
    assert echo["headers"]["accept-encoding"] == "identity"


def test_a_text_body_is_sent_with_the_content_type_given(
    client: TestClient, upstream: Upstream
) -> None:
    result = request(
        client,
        url=upstream.url("/echo"),
        method="POST",
        headers={"content-type": "text/csv"},
        body="a,b\n1,2\n",
    )

    assert result["json"]["body"] == "a,b\n1,2\n"
    assert result["json"]["headers"]["content-type"] == "text/csv"


# Redirects ---------------------------------------------------------------------------------------


def test_a_redirect_to_an_allowed_host_is_followed(client: TestClient, upstream: Upstream) -> None:
    result = request(client, url=upstream.url("/redirect"))

    assert (result["url"], result["redirects"]) == (upstream.url("/json"), 1)
    assert result["json"] == {"hello": "world", "n": [1, 2]}


def test_a_307_redirect_keeps_the_method_and_the_body(
    client: TestClient, upstream: Upstream
) -> None:
    result = request(client, url=upstream.url("/redirect-post"), method="POST", body="keep me")

    assert (result["method"], result["url"]) == ("POST", upstream.url("/echo"))
    assert (result["json"]["method"], result["json"]["body"]) == ("POST", "keep me")


def test_a_redirect_to_a_host_off_the_list_fails_naming_the_host(
    client: TestClient, upstream: Upstream
) -> None:
    error = failure(client, url=upstream.url("/elsewhere"))

    assert error == (
        f"HttpRequestFailed: GET {upstream.url('/elsewhere')}: redirected to "
        f"{upstream.url('/json', 'localhost')}; host localhost:{upstream.port} "
        "is not in HTTP_TASK_ALLOWED_HOSTS"
    )


def test_more_than_five_redirects_fail(client: TestClient, upstream: Upstream) -> None:
    error = failure(client, url=upstream.url("/loop"))

    assert error == f"HttpRequestFailed: GET {upstream.url('/loop')}: more than 5 redirects"


# Failures ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"), [("/fail", "500 Internal Server Error"), ("/missing", "404 Not Found")]
)
def test_an_answer_of_400_or_more_fails_naming_the_status(
    client: TestClient, upstream: Upstream, path: str, status: str
) -> None:
    error = failure(client, url=upstream.url(path), method="DELETE")

    assert error == f"HttpRequestFailed: DELETE {upstream.url(path)} answered {status}"


def test_a_request_past_its_timeout_fails_naming_the_host(
    client: TestClient, upstream: Upstream
) -> None:
    began = time.monotonic()
    error = failure(client, url=upstream.url("/slow"), timeout=0.2)

    assert error == (
        f"HttpRequestFailed: GET {upstream.url('/slow')}: "
        f"no answer from 127.0.0.1:{upstream.port} within 0.2 s"
    )
    assert time.monotonic() - began < 2


@pytest.mark.parametrize("task_timeout", [0.3])
def test_the_task_timeout_ends_a_request_with_a_longer_timeout(
    client: TestClient, upstream: Upstream
) -> None:
    error = failure(client, url=upstream.url("/slow"), timeout=MAX_TIMEOUT)

    assert error == "task timed out after 0.3 s"


def test_a_refused_connection_fails_naming_the_host(client: TestClient, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/"

    error = failure(client, url=url)

    assert error.startswith(f"HttpRequestFailed: GET {url}: could not connect to 127.0.0.1:")
    assert f"127.0.0.1:{closed_port}: " in error


# Refused at create time --------------------------------------------------------------------------


def refused(client: TestClient, config: dict[str, Any]) -> dict[str, Any]:
    """POST an http_request task; check that it was a 422 and created nothing; return the body."""
    response = client.post(
        "/tasks", json={"name": "call", "task_type": "http_request", "config": config}
    )
    assert response.status_code == 422, response.text
    assert client.get("/tasks").json() == []
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("allowed_hosts", [()])
def test_with_no_allowed_hosts_the_type_is_refused_as_disabled(
    client: TestClient, upstream: Upstream
) -> None:
    body = refused(client, {"url": upstream.url("/json")})

    assert body == {"error": "validation_error", "detail": DISABLED}


def test_the_default_settings_allow_no_host() -> None:
    assert Settings().http_task_allowed_hosts == ()


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://localhost:{port}/json", "localhost:{port}"),
        ("http://127.0.0.1:1/json", "127.0.0.1:1"),
        ("http://127.0.0.1/json", "127.0.0.1"),
        ("http://LocalHost:{port}/json", "localhost:{port}"),
    ],
    ids=["other-name", "other-port", "default-port", "upper-case"],
)
def test_a_host_off_the_list_is_refused_naming_it_and_the_setting(
    client: TestClient, upstream: Upstream, url: str, host: str
) -> None:
    body = refused(client, {"url": url.format(port=upstream.port)})

    assert body == {
        "error": "validation_error",
        "detail": f"config url: host {host.format(port=upstream.port)} "
        "is not in HTTP_TASK_ALLOWED_HOSTS",
    }


@pytest.mark.parametrize(
    ("config", "detail"),
    [
        ({"url": 7}, "config url must be a string, got 7"),
        ({"url": "ftp://127.0.0.1/x"}, "config url must be an http:// or https:// URL, got "),
        ({"url": "/json"}, "config url must be an http:// or https:// URL, got "),
        (
            {"url": "http://me:pw@127.0.0.1:{port}/json"},
            "config url must not carry user:password@ credentials; send them in config headers",
        ),
        ({"method": "TRACE"}, "config method must be one of GET, HEAD, POST, PUT, PATCH, "),
        ({"headers": {"X-N": 1}}, "config headers must be an object of strings, got "),
        ({"headers": ["X-N"]}, "config headers must be an object of strings, got "),
        ({"headers": {"Host": "evil"}}, "config headers: Host is set by the client"),
        ({"headers": {"X-A": "a\r\nX-B: b"}}, "config headers: the value of X-A must be one"),
        ({"json": {}, "body": ""}, "config may have json or body, not both"),
        ({"body": {"a": 1}}, "config body must be a string, got {'a': 1}"),
        ({"timeout": 5.5}, "config timeout must be a number of seconds above 0 and at most 5, "),
        ({"timeout": 0}, "config timeout must be a number of seconds above 0 and at most 5, "),
        ({"timeout": "9"}, "config timeout must be a number of seconds above 0 and at most 5, "),
    ],
    ids=[
        "url-not-string",
        "ftp-url",
        "relative-url",
        "userinfo",
        "method",
        "header-value-not-string",
        "headers-not-object",
        "host-header",
        "header-injection",
        "json-and-body",
        "body-not-string",
        "timeout-over-max",
        "timeout-zero",
        "timeout-string",
    ],
)
def test_a_bad_config_is_refused_naming_the_field_and_creates_nothing(
    client: TestClient, upstream: Upstream, config: dict[str, Any], detail: str
) -> None:
    url = config.get("url", upstream.url("/json"))
    full = {**config, "url": url.format(port=upstream.port) if isinstance(url, str) else url}

    body = refused(client, full)

    assert body["error"] == "validation_error"
    assert body["detail"].startswith(detail), body["detail"]


def test_a_config_without_url_is_refused(client: TestClient) -> None:
    body = refused(client, {"method": "GET"})

    assert body == {"error": "validation_error", "detail": "config url is required"}
