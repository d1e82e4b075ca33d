"""The dashboard (`/ui`) in headless Chromium against a real server: start a workflow from the
form and watch it run to COMPLETE live, step a manual one with its buttons, retry a failed one,
cancel one, travel back in a workflow's history, page, filter and search the table on the
server, resume the live feed after a server restart, and all of it with API_TOKEN on.

Every test fails on any error the page reports and on any request that leaves the server's
origin. Screenshots go to the `artifacts` folder (BROWSER_ARTIFACTS_DIR, else the test's tmp
directory); each path is printed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.browser.conftest import BROWSER_DEADLINE_MS, PAGE_HOST
from tests.browser.dashboard import Dashboard
from tests.e2e.conftest import ServerProcess, free_port, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

#: Simulated work at half its speed: a workflow takes about 1.5 s, each state a few tenths.
TIME_SCALE = "0.5"
TOKEN = "dashboard-token-0123456789abcdef"
#: What a browser logs while the server it follows is down (only the restart test allows it).
SERVER_AWAY = ("net::ERR_",)
#: What stands between the first and last row numbers of a page, as in "Page 1 · 1 to 10".
TO = "\N{EN DASH}"
FAILS_ONCE = '{"simulate_failure": true, "fail_until_retry": 1}'


def dashboard_server(workdir: Path, **overrides: str) -> ServerProcess:
    """A server the browser reaches as PAGE_HOST, with quick simulated tasks."""
    return ServerProcess(
        workdir=workdir,
        port=free_port(),
        overrides={"ALLOWED_HOSTS": PAGE_HOST, "TASK_TIME_SCALE": TIME_SCALE, **overrides},
    )


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server for the module's tests that need no server of their own."""
    server = dashboard_server(tmp_path_factory.mktemp("ui-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser context (its own storage), closed after the test."""
    opened = browser.new_context(viewport={"width": 1400, "height": 900})
    opened.set_default_timeout(BROWSER_DEADLINE_MS)
    try:
        yield opened
    finally:
        opened.close()


def origin_of(server: ServerProcess) -> str:
    return f"http://{PAGE_HOST}:{server.port}"


@pytest.fixture
def dashboard(context: BrowserContext, ui_server: ServerProcess) -> Dashboard:
    """The dashboard of `ui_server`, open and live."""
    opened = Dashboard(context, origin_of(ui_server)).open()
    opened.wait_live()
    return opened


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def api_start(server: ServerProcess, body: dict[str, Any]) -> int:
    with server.client() as client:
        response = client.post("/workflow/start", json=body)
    assert response.status_code == 201, response.text
    workflow_id: int = response.json()["workflow_id"]
    return workflow_id


def api_workflow(server: ServerProcess, workflow_id: int) -> dict[str, Any]:
    with server.client() as client:
        body: dict[str, Any] = client.get(f"/workflow/{workflow_id}").json()
    return body


# The live table -----------------------------------------------------------------------------------


def test_a_workflow_started_from_the_form_runs_to_complete_live(
    dashboard: Dashboard, ui_server: ServerProcess, artifacts: Path
) -> None:
    dashboard.keep_marker()
    dashboard.watch_statuses()
    complete_before = dashboard.count_tile("COMPLETE")
    name = unique("from-the-form")

    workflow_id = dashboard.start_from_form(name, config='{"iterations": 7}')

    row = dashboard.row(workflow_id)
    expect(row.locator("td.name")).to_have_text(name)
    expect(row).to_have_attribute("data-status", "COMPLETE")
    seen = dashboard.statuses_seen(workflow_id)
    assert seen[-1] == "COMPLETE"
    # It moved through its states on the page, not only from start to end.
    assert {"PREPARE", "EXECUTE", "VALIDATE"} & set(seen), seen
    assert seen == sorted(seen, key=["INIT", "PREPARE", "EXECUTE", "VALIDATE", "COMPLETE"].index)
    expect(dashboard.page.locator('#counts li[data-status="COMPLETE"] .count-value')).to_have_text(
        str(complete_before + 1)
    )
    assert int(dashboard.page.inner_text("#started-total")) >= 1
    dashboard.assert_not_reloaded()
    body = api_workflow(ui_server, workflow_id)
    assert body["config"] == {"iterations": 7}
    assert body["task_results"]["EXECUTE"]["computation_result"] == sum(i * i for i in range(7))
    (post,) = dashboard.record.to("/workflow/start", "POST")
    assert post.headers["content-type"] == "application/json"
    assert post.headers["idempotency-key"]
    dashboard.screenshot(artifacts, "dashboard-list")
    dashboard.assert_clean()


def test_a_workflow_started_elsewhere_appears_and_runs_without_a_reload(
    dashboard: Dashboard, ui_server: ServerProcess
) -> None:
    dashboard.keep_marker()
    dashboard.watch_statuses()
    name = unique("started-elsewhere")

    workflow_id = api_start(ui_server, {"name": name})

    expect(dashboard.row(workflow_id).locator("td.name")).to_have_text(name)
    expect(dashboard.row(workflow_id)).to_have_attribute("data-status", "COMPLETE")
    assert len(dashboard.statuses_seen(workflow_id)) >= 2  # seen before it completed
    assert dashboard.shown_ids()[0] == workflow_id  # newest first
    dashboard.assert_not_reloaded()
    dashboard.assert_clean()


def test_the_config_is_checked_before_anything_is_sent(dashboard: Dashboard) -> None:
    page = dashboard.page
    page.fill("#start-name", unique("never-sent"))
    submit = page.locator("#start-submit")
    problem = page.locator("#config-error")

    page.fill("#start-config", '{"iterations": 7')
    expect(problem).to_be_visible()
    expect(problem).to_contain_text("not valid JSON")
    expect(submit).to_be_disabled()
    expect(page.locator("#start-config")).to_have_attribute("aria-invalid", "true")

    page.fill("#start-config", "[1, 2]")
    expect(problem).to_have_text('Config must be a JSON object, such as {"iterations": 100}.')
    expect(submit).to_be_disabled()

    page.fill("#start-config", '{"iterations": 7}')
    expect(problem).to_be_hidden()
    expect(submit).to_be_enabled()
    page.fill("#start-name", "")
    expect(submit).to_be_disabled()

    assert dashboard.record.to("/workflow/start", "POST") == []
    dashboard.assert_clean()


# One workflow -------------------------------------------------------------------------------------


def test_a_manual_workflow_is_stepped_with_its_buttons_and_travelled_back_in(
    dashboard: Dashboard, ui_server: ServerProcess, artifacts: Path
) -> None:
    page = dashboard.page
    workflow_id = dashboard.start_from_form(unique("stepped"), manual=True)
    expect(dashboard.row(workflow_id).locator("td.state")).to_have_text("INIT · waiting for next")
    dashboard.keep_marker()

    dashboard.open_detail(workflow_id)

    expect(dashboard.current_state()).to_have_attribute("data-state", "INIT")
    dashboard.wait_for_actions(["next", "cancel"])
    for reached in ("PREPARE", "EXECUTE", "VALIDATE", "COMPLETE"):
        dashboard.action("next").click()
        expect(dashboard.current_state()).to_have_attribute("data-state", reached)
        expect(page.locator("#detail-status .badge")).to_have_text(reached)
    dashboard.wait_for_actions(["delete"])
    timeline = page.locator("#timeline tbody tr")
    expect(timeline).to_have_count(4)
    expect(timeline.last).to_have_attribute("data-to", "COMPLETE")
    for state in ("INIT", "PREPARE", "EXECUTE", "VALIDATE"):
        expect(page.locator(f'#results .result[data-state="{state}"]')).to_be_visible()
    expect(page.locator('#results .result[data-state="PREPARE"] pre')).to_contain_text(
        '"files_created": 3'
    )
    version = api_workflow(ui_server, workflow_id)["version"]
    expect(page.locator("#events tbody tr")).to_have_count(version)
    expect(page.locator("#events tbody tr").first).to_contain_text("WorkflowStarted")
    expect(page.locator("#machine .edge.taken")).to_have_count(4)
    dashboard.screenshot(artifacts, "dashboard-detail")

    # Time travel: the workflow as it was after its first event, then back to now.
    with ui_server.client() as client:
        events = client.get(f"/workflow/{workflow_id}/events").json()
    moved = next(e["version"] for e in events if e["type"] == "WorkflowTransitioned")
    page.locator("#travel-version").fill("1")
    expect(page.locator("#travel-banner")).to_contain_text(f"as it was at version 1 of {version}")
    expect(dashboard.current_state()).to_have_attribute("data-state", "INIT")
    expect(timeline).to_have_count(0)
    dashboard.wait_for_actions([])
    page.locator("#travel-version").fill(str(moved))  # right after INIT -> PREPARE
    expect(dashboard.current_state()).to_have_attribute("data-state", "PREPARE")
    expect(timeline).to_have_count(1)
    expect(page.locator("#events tbody tr.later")).to_have_count(version - moved)
    dashboard.screenshot(artifacts, "dashboard-time-travel")
    page.click("#travel-now")
    expect(dashboard.current_state()).to_have_attribute("data-state", "COMPLETE")
    expect(page.locator("#travel-banner")).to_be_hidden()
    dashboard.wait_for_actions(["delete"])
    reads = dashboard.record.to(f"/workflow/{workflow_id}")
    assert {r.query["at_version"][0] for r in reads if "at_version" in r.query} == {
        "1",
        str(moved),
    }

    # Delete asks to be clicked twice.
    dashboard.action("delete").click()
    expect(dashboard.action("delete")).to_have_text("Confirm delete")
    assert api_workflow(ui_server, workflow_id)["status"] == "COMPLETE"
    dashboard.action("delete").click()
    expect(page.locator("#list-view")).to_be_visible()
    expect(page.locator("#notice")).to_have_text(f"Workflow {workflow_id} deleted.")
    expect(dashboard.row(workflow_id)).to_have_count(0)
    with ui_server.client() as client:
        assert client.get(f"/workflow/{workflow_id}").status_code == 404
    assert len(dashboard.record.to(f"/workflow/{workflow_id}/next", "POST")) == 4
    dashboard.assert_not_reloaded()
    dashboard.assert_clean()


def test_a_failed_workflow_is_retried_from_its_detail_and_completes_live(
    dashboard: Dashboard, ui_server: ServerProcess, artifacts: Path
) -> None:
    page = dashboard.page
    workflow_id = dashboard.start_from_form(unique("flaky"), config=FAILS_ONCE)
    expect(dashboard.row(workflow_id)).to_have_attribute("data-status", "FAILED")

    dashboard.open_detail(workflow_id)

    expect(dashboard.current_state()).to_have_attribute("data-state", "FAILED")
    expect(page.locator("#detail-error")).to_contain_text(
        "simulated failure on attempt 1 (fails while retries < 1)"
    )
    expect(page.locator("#timeline tbody tr .reason")).to_contain_text("simulated failure")
    dashboard.wait_for_actions(["retry", "delete"])
    dashboard.screenshot(artifacts, "dashboard-failed")

    dashboard.action("retry").click()

    expect(dashboard.current_state()).to_have_attribute("data-state", "COMPLETE")
    expect(page.locator("#detail-error")).to_be_hidden()
    expect(page.locator("#facts dt:text-is('Retries') + dd")).to_have_text("1")
    triggers = page.locator("#timeline tbody tr td:nth-child(4)")
    expect(triggers).to_have_text(
        [re.compile("^fail"), "retry", "prepare", "execute", "validate", "complete"]
    )
    assert api_workflow(ui_server, workflow_id)["retries"] == 1
    assert len(dashboard.record.to(f"/workflow/{workflow_id}/retry", "POST")) == 1
    dashboard.assert_clean()


def test_a_running_workflow_is_cancelled_from_its_detail(
    dashboard: Dashboard, ui_server: ServerProcess
) -> None:
    workflow_id = api_start(ui_server, {"name": unique("to-cancel"), "auto_start": False})
    expect(dashboard.row(workflow_id)).to_be_visible()
    dashboard.open_detail(workflow_id)
    dashboard.wait_for_actions(["next", "cancel"])

    dashboard.action("cancel").click()

    expect(dashboard.current_state()).to_have_attribute("data-state", "CANCELLED")
    dashboard.wait_for_actions(["delete"])
    assert api_workflow(ui_server, workflow_id)["status"] == "CANCELLED"
    dashboard.page.click("#back")
    expect(dashboard.row(workflow_id)).to_have_attribute("data-status", "CANCELLED")
    dashboard.assert_clean()


# Paging, filtering, searching ---------------------------------------------------------------------


def test_the_table_pages_filters_and_searches_on_the_server(
    dashboard: Dashboard, ui_server: ServerProcess, artifacts: Path
) -> None:
    page = dashboard.page
    prefix = unique("paged")
    ids = [
        api_start(ui_server, {"name": f"{prefix}-{i:02d}", "auto_start": False}) for i in range(23)
    ]
    other = api_start(ui_server, {"name": unique("not-paged"), "auto_start": False})
    info = page.locator("#page-info")
    page.select_option("#page-size", "10")

    page.fill("#name-search", prefix.upper())  # any case of its ASCII letters

    dashboard.wait_for_ids(ids[::-1][:10])
    expect(info).to_have_text(f"Page 1 · 1{TO}10")
    page.click("#next-page")
    dashboard.wait_for_ids(ids[::-1][10:20])
    expect(info).to_have_text(f"Page 2 · 11{TO}20")
    page.click("#next-page")
    dashboard.wait_for_ids(ids[::-1][20:])
    expect(info).to_have_text(f"Page 3 · 21{TO}23")
    expect(page.locator("#next-page")).to_be_disabled()
    page.select_option("#order", "asc")
    dashboard.wait_for_ids(ids[:10])
    expect(info).to_have_text(f"Page 1 · 1{TO}10")
    page.select_option("#status-filter", "COMPLETE")
    expect(page.locator("#empty")).to_be_visible()
    expect(dashboard.rows()).to_have_count(0)
    page.select_option("#status-filter", "INIT")
    dashboard.wait_for_ids(ids[:10])
    assert other not in dashboard.shown_ids()
    dashboard.screenshot(artifacts, "dashboard-search")

    # Without a search the counters give the total: first and last page by number.
    page.fill("#name-search", "")
    with ui_server.client() as client:
        waiting = client.get("/execution/stats").json()["workflows"]["init"]
    pages = -(-waiting // 10)
    expect(info).to_have_text(re.compile(rf"^Page 1 of {pages} · 1{TO}\d+ of {waiting}$"))
    page.click("#last-page")
    expect(info).to_have_text(re.compile(rf"^Page {pages} of {pages} · "))
    with ui_server.client() as client:
        newest = client.get("/workflows?status_filter=INIT&order=desc&limit=1").json()
    assert dashboard.shown_ids()[-1] == newest[0]["workflow_id"]  # oldest first: the newest last

    # The server did the work: every list request asked for one page and named the search.
    lists = dashboard.record.to("/workflows")
    assert lists and all(int(r.query["limit"][0]) <= 101 for r in lists)
    searched = [r for r in lists if r.query.get("name")]
    assert searched and {r.query["name"][0] for r in searched} >= {prefix.upper()}
    assert {"desc", "asc"} <= {r.query["order"][0] for r in lists}
    assert any(r.query.get("status_filter") == ["INIT"] for r in lists)
    dashboard.assert_clean()


def test_a_header_tile_filters_the_table_by_its_state(
    dashboard: Dashboard, ui_server: ServerProcess
) -> None:
    workflow_id = api_start(
        ui_server, {"name": unique("tile"), "config": {"simulate_failure": True}}
    )
    expect(dashboard.row(workflow_id)).to_have_attribute("data-status", "FAILED")

    dashboard.page.click('#counts li[data-status="FAILED"] button')

    expect(dashboard.page.locator("#status-filter")).to_have_value("FAILED")
    expect(dashboard.row(workflow_id)).to_be_visible()
    statuses = dashboard.page.eval_on_selector_all(
        "#workflows tbody tr", "rows => [...new Set(rows.map(r => r.dataset.status))]"
    )
    assert statuses == ["FAILED"]
    dashboard.assert_clean()


# A restart, and API_TOKEN -------------------------------------------------------------------------


def test_the_live_feed_resumes_after_a_server_restart_from_the_last_event_seen(
    context: BrowserContext, tmp_path: Path, artifacts: Path
) -> None:
    server = dashboard_server(tmp_path / "restarted")
    (tmp_path / "restarted").mkdir()
    server.start()
    try:
        dashboard = Dashboard(context, origin_of(server)).open()
        dashboard.wait_live()
        dashboard.keep_marker()
        before = api_start(server, {"name": unique("before-restart")})
        expect(dashboard.row(before)).to_have_attribute("data-status", "COMPLETE")
        with server.client() as client:
            head = wait_for(
                lambda: client.get("/health").json()["log_position"],
                lambda position: position == api_workflow(server, before)["version"],
                what="the log to hold the whole workflow",
            )
        body = dashboard.page.locator("body")
        expect(body).to_have_attribute("data-last-event-id", str(head))

        server.stop()
        expect(dashboard.page.locator("#connection")).to_have_attribute(
            "data-state", "reconnecting"
        )
        server.start()
        expect(dashboard.page.locator("#connection")).to_have_attribute("data-state", "live")
        after = api_start(server, {"name": unique("after-restart")})

        expect(dashboard.row(after)).to_have_attribute("data-status", "COMPLETE")
        streams = dashboard.record.to("/events/stream")
        assert len(streams) >= 2
        assert "last-event-id" not in streams[0].headers
        assert streams[-1].headers["last-event-id"] == str(head)
        assert dashboard.shown_ids()[:2] == [after, before]
        dashboard.assert_not_reloaded()
        dashboard.screenshot(artifacts, "dashboard-after-restart")
        # While the server was down the browser said it could not connect; nothing else.
        dashboard.assert_clean(allowed=SERVER_AWAY)
    finally:
        server.stop()


def test_with_api_token_the_page_asks_once_and_keeps_it_for_the_tab_only(
    context: BrowserContext, tmp_path: Path, artifacts: Path
) -> None:
    workdir = tmp_path / "token"
    workdir.mkdir()
    server = dashboard_server(workdir, API_TOKEN=TOKEN)
    server.start()
    try:
        dashboard = Dashboard(context, origin_of(server)).open()
        page = dashboard.page
        dialog = page.locator("#token-dialog")
        expect(dialog).to_be_visible()
        dashboard.screenshot(artifacts, "dashboard-token")
        # Nothing but the page's own files was asked for before the token.
        assert {r.path for r in dashboard.record.requests} <= {
            "/ui",
            *(
                f"/ui/static/{n}"
                for n in (
                    "main.js",
                    "api.js",
                    "detail.js",
                    "dom.js",
                    "form.js",
                    "header.js",
                    "stream.js",
                    "table.js",
                    "machine.js",
                    "dashboard.css",
                    "favicon.svg",
                )
            ),
        }

        page.fill("#token-input", TOKEN)
        page.click('#token-form button[type="submit"]')

        expect(dialog).to_be_hidden()
        dashboard.wait_live()
        workflow_id = dashboard.start_from_form(unique("with-token"))
        expect(dashboard.row(workflow_id)).to_have_attribute("data-status", "COMPLETE")
        dashboard.open_detail(workflow_id)
        expect(dashboard.current_state()).to_have_attribute("data-state", "COMPLETE")

        api_calls = [r for r in dashboard.record.requests if not r.path.startswith("/ui")]
        assert api_calls and all(
            r.headers.get("authorization") == f"Bearer {TOKEN}" for r in api_calls
        ), [(r.url, r.headers.get("authorization")) for r in api_calls]
        assert dashboard.record.to("/events/stream")
        assert not [r.url for r in dashboard.record.requests if TOKEN in r.url]
        assert page.evaluate("() => sessionStorage.getItem('orchestrator.token')") == TOKEN
        assert page.evaluate("() => localStorage.length") == 0
        dashboard.assert_clean()

        # Another tab of the same browser asks again: the token was for that tab only.
        other = Dashboard(context, origin_of(server)).open()
        expect(other.page.locator("#token-dialog")).to_be_visible()
        assert other.page.evaluate("() => sessionStorage.length") == 0
        other.assert_clean()
    finally:
        server.stop()
