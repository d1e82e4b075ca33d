"""The dashboard's server side: GET /ui and its files (CSP, public, packaged, no inline code),
GET /workflows' name search and order, and GET /execution/activity.

How the page behaves in a browser is tests/browser/test_dashboard.py.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from orchestrator.domain.commands import StartWorkflow
from orchestrator.http.activity import ActivityCounts
from orchestrator.http.app import create_app
from orchestrator.http.ui import CONTENT_SECURITY_POLICY
from orchestrator.runtime import build_runtime
from orchestrator.settings import Settings
from tests.settings_for_tests import TESTCLIENT_HOSTS

ROOT = Path(__file__).resolve().parents[2]
UI_FILES = resources.files("orchestrator.http") / "static" / "ui"
TOKEN = "ui-token-0123456789abcdef"


class PageParts(HTMLParser):
    """What a page loads and anything inline in it (scripts, styles, handlers)."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.inline: list[str] = []
        self.body_auth: str | None = None
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in found:
            if name.startswith("on") or name == "style":
                self.inline.append(f"<{tag} {name}=...>")
        if tag == "script":
            if found.get("src"):
                self.loads.append(str(found["src"]))
            else:
                self.inline.append("<script> without src")
        if tag == "style":
            self.inline.append("<style>")
        if tag == "link" and found.get("href"):
            self.loads.append(str(found["href"]))
        if tag == "body":
            self.body_auth = found.get("data-auth")


def page_parts(html: str) -> PageParts:
    parts = PageParts()
    parts.feed(html)
    return parts


def module_imports(source: str) -> list[str]:
    """The relative module paths a script module imports."""
    return re.findall(r"""(?:from|import)\s*\(?\s*["'](\./[\w./-]+)["']""", source)


def test_the_dashboard_page_is_html_with_a_policy_that_allows_only_this_origin(
    client: TestClient,
) -> None:
    for path in ("/ui", "/ui/"):
        response = client.get(path)

        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-cache"
    policy = dict(
        directive.strip().split(" ", 1) for directive in CONTENT_SECURITY_POLICY.split(";")
    )
    assert policy["default-src"] == "'none'"
    for directive in ("script-src", "style-src", "connect-src", "img-src"):
        assert policy[directive] == "'self'", directive
    assert policy["frame-ancestors"] == "'none'"


def test_the_page_has_no_inline_code_and_loads_only_its_own_files(client: TestClient) -> None:
    parts = page_parts(client.get("/ui").text)

    assert parts.inline == []
    assert parts.loads
    assert all(url.startswith("/ui/static/") for url in parts.loads), parts.loads


def test_every_file_the_page_and_its_modules_load_is_served_with_the_policy(
    client: TestClient,
) -> None:
    pending = list(page_parts(client.get("/ui").text).loads)
    seen: set[str] = set()
    while pending:
        url = pending.pop()
        if url in seen:
            continue
        seen.add(url)
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY, url
        assert response.headers["x-content-type-options"] == "nosniff", url
        if url.endswith(".js"):
            assert response.headers["content-type"].startswith("text/javascript"), url
            folder = url.rsplit("/", 1)[0]
            pending += [f"{folder}/{name[2:]}" for name in module_imports(response.text)]
    assert {"/ui/static/main.js", "/ui/static/stream.js", "/ui/static/dashboard.css"} <= seen
    assert len(seen) >= 9


def test_the_page_is_left_out_of_the_api_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert not [path for path in paths if path.startswith("/ui")]
    assert "/execution/activity" in paths


def test_the_page_says_whether_the_api_needs_a_token() -> None:
    plain = Settings(database_url="memory://", log_file="", allowed_hosts=TESTCLIENT_HOSTS)
    with TestClient(create_app(plain)) as client:
        assert page_parts(client.get("/ui").text).body_auth == "off"

    guarded = Settings(
        database_url="memory://", log_file="", allowed_hosts=TESTCLIENT_HOSTS, api_tokens=(TOKEN,)
    )
    with TestClient(create_app(guarded)) as client:
        page = client.get("/ui")
        script = client.get("/ui/static/main.js")
        data = client.get("/workflows")

        assert page.status_code == 200 and page_parts(page.text).body_auth == "bearer"
        assert script.status_code == 200
        assert data.status_code == 401


def test_every_file_of_the_page_is_package_data() -> None:
    # A plain (non-editable) install must carry the files: they must match the patterns of
    # [tool.setuptools.package-data] for the package that serves them.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["orchestrator.http"]
    files = [f"static/ui/{entry.name}" for entry in UI_FILES.iterdir() if entry.is_file()]

    assert "static/ui/index.html" in files
    unpackaged = [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)]
    assert unpackaged == []
    assert not [entry.name for entry in UI_FILES.iterdir() if entry.is_dir()]  # not matched


# GET /workflows: name search and order -------------------------------------------------------


def listed(client: TestClient, query: str) -> list[tuple[int, str]]:
    response = client.get(f"/workflows?{query}")
    assert response.status_code == 200, response.text
    return [(w["workflow_id"], w["name"]) for w in response.json()]


def test_workflows_are_searched_by_name_and_ordered_on_the_server(
    client: TestClient, start: Callable[[dict[str, Any]], int]
) -> None:
    names = ["Nightly report", "nightly backup", "weekly_report", "adhoc", "REPORT 100%"]
    ids = [start({"name": name, "auto_start": False}) for name in names]

    assert listed(client, "name=report") == [
        (ids[0], "Nightly report"),
        (ids[2], "weekly_report"),
        (ids[4], "REPORT 100%"),
    ]
    assert listed(client, "name=NIGHTLY&order=desc") == [
        (ids[1], "nightly backup"),
        (ids[0], "Nightly report"),
    ]
    assert listed(client, "name=100%25") == [(ids[4], "REPORT 100%")]
    assert listed(client, "name=y_r") == [(ids[2], "weekly_report")]
    assert listed(client, "order=DESC&limit=2&skip=1") == [
        (ids[3], "adhoc"),
        (ids[2], "weekly_report"),
    ]
    assert listed(client, "name=report&status_filter=COMPLETE") == []
    assert listed(client, "name=") == listed(client, "")


def test_without_name_or_order_the_list_is_as_before(
    client: TestClient, start: Callable[[dict[str, Any]], int]
) -> None:
    ids = [start({"name": f"w{i}", "auto_start": False}) for i in range(3)]

    assert [i for i, _ in listed(client, "")] == ids
    assert [i for i, _ in listed(client, "skip=1&limit=1")] == ids[1:2]


@pytest.mark.parametrize(
    ("query", "detail"),
    [
        ("order=sideways", "order must be one of asc, desc; got 'sideways'"),
        ("name=" + "x" * 256, "invalid query parameter: Expected `str` of length <= 255"),
    ],
)
def test_a_bad_order_or_name_is_a_422_naming_it(
    client: TestClient, query: str, detail: str
) -> None:
    response = client.get(f"/workflows?{query}")

    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert response.json()["detail"].startswith(detail)


# GET /execution/activity -----------------------------------------------------------------------


def test_activity_counts_workflows_started_and_finished_in_the_current_minute(
    client: TestClient,
    start: Callable[[dict[str, Any]], int],
    settle: Callable[[int], dict[str, Any]],
) -> None:
    finished = [start({"name": f"auto-{i}"}) for i in range(3)]
    finished.append(start({"name": "fails", "config": {"simulate_failure": True}}))
    start({"name": "waits", "auto_start": False})
    for workflow_id in finished:
        settle(workflow_id)

    body = client.get("/execution/activity").json()

    assert len(body["minutes"]) == 60
    assert body["complete"] is True
    assert body["position"] == client.get("/health").json()["log_position"]
    assert sum(m["started"] for m in body["minutes"]) == 5
    assert sum(m["finished"] for m in body["minutes"]) == 4  # 3 COMPLETE, 1 FAILED
    assert body["minutes"][-1]["started"] >= 1  # the current minute comes last
    minutes = [datetime.fromisoformat(m["minute"]) for m in body["minutes"]]
    assert minutes == sorted(minutes)
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(minutes))
    assert body["until"] == (minutes[-1] + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert len(client.get("/execution/activity?minutes=5").json()["minutes"]) == 5
    assert client.get("/execution/activity?minutes=61").status_code == 422


class Clock:
    """A clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.anyio
async def test_activity_reads_a_busy_hour_over_several_calls_and_forgets_an_old_one() -> None:
    runtime = build_runtime(Settings(database_url="memory://", task_time_scale=0, log_file=""))
    await runtime.start()
    try:
        for i in range(4):
            await runtime.coordinator.start(StartWorkflow(workflow_id=0, name=f"w{i}"))
        await runtime.coordinator.wait_idle()
        head = await runtime.store.head_position()
        clock = Clock()
        # 4 started and 16 transitioned events count; 7 at a time takes three calls.
        counts = ActivityCounts(runtime.store, clock=clock, budget=7)

        answers = [await counts.read(60) for _ in range(3)]

        assert [a.complete for a in answers] == [False, False, True]
        assert [a.position for a in answers][-1] == head
        assert answers[0].position < answers[1].position < head
        assert sum(m.started for m in answers[-1].minutes) == 4
        assert sum(m.finished for m in answers[-1].minutes) == 4

        clock.now += timedelta(hours=2)  # the hour passed with nothing new
        later = await counts.read(60)

        assert later.complete and later.position == head
        assert sum(m.started + m.finished for m in later.minutes) == 0
        assert later.until - later.since == timedelta(hours=1)
    finally:
        await runtime.stop()


@pytest.mark.anyio
async def test_activity_after_a_restart_counts_from_the_log_not_from_memory(
    tmp_path: Path,
) -> None:
    # A new ActivityCounts stands for a new process: it finds the window in the log by time.
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'log.db'}", task_time_scale=0, log_file=""
    )
    runtime = build_runtime(settings)
    await runtime.start()
    try:
        for i in range(3):
            await runtime.coordinator.start(StartWorkflow(workflow_id=0, name=f"w{i}"))
        await runtime.coordinator.wait_idle()
    finally:
        await runtime.stop()
    runtime = build_runtime(settings)
    await runtime.start()
    try:
        clock = Clock()
        fresh = await ActivityCounts(runtime.store, clock=clock).read(60)
        clock.now += timedelta(minutes=61)
        moved_on = await ActivityCounts(runtime.store, clock=clock).read(60)
    finally:
        await runtime.stop()

    assert sum(m.started for m in fresh.minutes) == 3
    assert sum(m.finished for m in fresh.minutes) == 3
    assert sum(m.started + m.finished for m in moved_on.minutes) == 0
