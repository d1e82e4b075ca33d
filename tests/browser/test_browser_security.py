"""The browser threats, in a real browser: a page of another origin on this machine tries to
start and cancel workflows with every request it may send without a preflight, and Swagger UI's
"Authorize" button opens a server that has API_TOKEN.

The attacking page is served from this machine on another port, under another name (another
site) or under the server's own name (the same site); its requests go to the real server, which
must refuse each one (403), and nothing may change. A request Chromium itself blocked would prove
nothing (it blocks a public page's requests to 127.0.0.1, where other browsers do not), so every
one must get an answer.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Response

from tests.browser.conftest import BROWSER_DEADLINE_MS, PAGE_HOST
from tests.e2e.conftest import ServerProcess, free_port, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

TOKEN = "browser-token-0123456789abcdef"

#: Every request a page may send to another origin without a CORS preflight, as a page would.
ATTACK_PAGE = """<!DOCTYPE html>
<html><body>
<iframe name="sink"></iframe>
<form id="form" method="post" enctype="text/plain" target="sink" action="API/workflow/start">
  <input name='{"name": "from a form", "x": "' value='"}'>
</form>
<script>
  const attempts = [
    ["API/workflow/start", {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body: '{"name": "from fetch"}'}],
    ["API/workflow/start", {method: "POST", mode: "no-cors",
      body: new Blob(['{"name": "from a blob"}'])}],
    ["API/workflow/ID/cancel", {method: "POST", mode: "no-cors"}],
    ["API/execution/workflows/ID/cancel", {method: "POST", mode: "no-cors",
      referrerPolicy: "no-referrer"}],
  ];
  window.attack = async () => {
    for (const [url, init] of attempts) {
      await fetch(url, init).catch(() => null);
    }
    navigator.sendBeacon("API/workflow/ID/cancel");
    document.getElementById("form").submit();
  };
</script>
</body></html>
"""
#: How many requests the attack sends: four fetches, a beacon and a form.
ATTACK_REQUESTS = 6


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser context, closed after the test."""
    opened = browser.new_context()
    opened.set_default_timeout(BROWSER_DEADLINE_MS)
    try:
        yield opened
    finally:
        opened.close()


@dataclass
class AttackSite:
    """A web server on this machine (127.0.0.1, another port) that serves `html` at any path."""

    port: int
    html: str = ""


@pytest.fixture
def attack_site() -> Iterator[AttackSite]:
    """The attacker's site, a plain local HTTP server: Chromium lets only a page in the same
    (loopback) address space send requests to 127.0.0.1 at all, so that is the page to test."""
    site = AttackSite(port=0)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = site.html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # no console noise

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    site.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def answered(page: Page, answers: list[Response]) -> int:
    """How many answers the page got so far, after letting Playwright deliver its events."""
    page.wait_for_timeout(20)
    return len(answers)


@pytest.mark.parametrize(
    "attacker_host", ["localhost", PAGE_HOST], ids=["another-site", "same-site"]
)
def test_a_page_of_another_origin_can_neither_start_nor_cancel(
    context: BrowserContext,
    docs_server: ServerProcess,
    page_origin: str,
    attack_site: AttackSite,
    attacker_host: str,
) -> None:
    with docs_server.client() as client:
        manual = client.post("/workflow/start", json={"name": "target", "auto_start": False})
        workflow_id = manual.json()["workflow_id"]
        before = client.get("/workflows").json()
    attack_site.html = ATTACK_PAGE.replace("API", page_origin).replace("ID", str(workflow_id))
    page = context.new_page()
    answers: list[Response] = []
    page.on("response", lambda r: answers.append(r) if r.url.startswith(page_origin) else None)
    page.goto(f"http://{attacker_host}:{attack_site.port}/")
    page.evaluate("window.attack()")
    # Playwright delivers its events only while it is called, so the wait goes through the page.
    wait_for(lambda: answered(page, answers), lambda n: n >= ATTACK_REQUESTS, what="the answers")

    assert sorted({(a.request.method, a.status) for a in answers}) == [("POST", 403)]
    with docs_server.client() as client:
        assert client.get("/workflows").json() == before
        assert client.get(f"/workflow/{workflow_id}").json()["status"] == "INIT"


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server with API_TOKEN, answering under PAGE_HOST."""
    server = ServerProcess(
        workdir=tmp_path_factory.mktemp("token-server"),
        port=free_port(),
        overrides={"API_TOKEN": TOKEN, "ALLOWED_HOSTS": PAGE_HOST},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def execute_stats(page: Page) -> str:
    """Run GET /execution/stats through Swagger UI's "Try it out"; the status it shows."""
    block = page.locator("#operations-execution-get_execution_stats")
    if not block.locator(".execute").is_visible():
        if not block.locator(".try-out__btn").is_visible():
            block.locator(".opblock-summary").click()
        block.locator(".try-out__btn").click()
    block.locator(".execute").click()
    status = block.locator(".live-responses-table tr.response .response-col_status").first
    status.wait_for()
    return status.inner_text().strip()


def test_swagger_uis_authorize_button_opens_a_server_with_api_token(
    context: BrowserContext, token_server: ServerProcess, artifacts: Path
) -> None:
    page = context.new_page()
    page.goto(f"http://{PAGE_HOST}:{token_server.port}/docs")
    page.locator(".opblock").first.wait_for()

    assert execute_stats(page) == "401"

    page.locator("button.authorize").first.click()
    page.locator(".modal-ux input").fill(TOKEN)
    page.locator(".modal-ux .auth-btn-wrapper button.authorize").click()
    page.locator(".modal-ux button.btn-done").click()
    page.locator(".live-responses-table").first.wait_for()
    block = page.locator("#operations-execution-get_execution_stats")
    block.locator(".btn-clear").click()

    assert execute_stats(page) == "200"
    page.screenshot(path=artifacts / "swagger-ui-authorized.png", full_page=True)
