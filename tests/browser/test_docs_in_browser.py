"""/docs (Swagger UI) and /redoc (ReDoc) as a browser shows them: every operation of
/openapi.json is rendered, the page logs no error, and no request leaves the server.

A page that only *serves* fine can still fail in the browser: Swagger UI 4 answers our OpenAPI
3.1 document with "Unable to render this definition", and ReDoc fetches a logo from its CDN.
Each test saves a screenshot of the page (see the `artifacts` fixture).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Request
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.conftest import BROWSER_DEADLINE_MS
from tests.e2e.conftest import ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

#: What Swagger UI shows instead of the operations when it cannot read the document.
UNRENDERABLE = "Unable to render this definition"


@dataclass
class PageRecord:
    """What a page did while it loaded: every request URL, and every error it reported."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def on_request(self, request: Request) -> None:
        """Remember the URL of a request the page made."""
        self.requests.append(request.url)

    def on_console(self, message: ConsoleMessage) -> None:
        """Remember a console message of type error, with where it came from."""
        if message.type == "error":
            location = message.location
            self.errors.append(f"console: {message.text} ({location.get('url', '')})")

    def on_page_error(self, error: PlaywrightError) -> None:
        """Remember an uncaught exception in the page."""
        self.errors.append(f"pageerror: {error.message}")

    def leaving(self, origin: str) -> list[str]:
        """The requests that went anywhere but `origin` (blob: URLs count by their origin)."""
        return [url for url in self.requests if not is_local(url, origin)]


def is_local(url: str, origin: str) -> bool:
    """Whether fetching `url` stays within `origin`; data: URLs fetch nothing."""
    if url.startswith("data:"):
        return True
    parts = urlsplit(url.removeprefix("blob:"))
    return f"{parts.scheme}://{parts.netloc}" == origin


@dataclass
class OpenedPage:
    """A page of the server, open in a fresh browser context, and what it did so far."""

    page: Page
    record: PageRecord
    origin: str


class OpenPage(Protocol):
    """Opens a path of the server in a fresh browser context and records what the page does."""

    def __call__(self, path: str) -> OpenedPage: ...


@pytest.fixture
def open_page(browser: Browser, page_origin: str) -> Iterator[OpenPage]:
    """A function that opens a path of the server; every context is closed at teardown."""
    contexts: list[BrowserContext] = []

    def open_(path: str) -> OpenedPage:
        context = browser.new_context()
        contexts.append(context)
        context.set_default_timeout(BROWSER_DEADLINE_MS)
        page = context.new_page()
        record = PageRecord()
        page.on("request", record.on_request)
        page.on("console", record.on_console)
        page.on("pageerror", record.on_page_error)
        response = page.goto(page_origin + path)
        assert response is not None and response.status == 200, f"GET {path}: {response}"
        return OpenedPage(page, record, page_origin)

    try:
        yield open_
    finally:
        for context in contexts:
            context.close()


@pytest.fixture(scope="module")
def document(docs_server: ServerProcess) -> dict[str, Any]:
    """The server's /openapi.json."""
    with docs_server.client() as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every operation of the document by `METHOD /path`."""
    return {
        f"{method.upper()} {path}": operation
        for path, path_item in document["paths"].items()
        for method, operation in path_item.items()
    }


def wait_until_rendered(opened: OpenedPage, condition: str, count: int, what: str) -> None:
    """Wait until the JS predicate `condition(count)` holds, then until the network is idle
    (so late requests, such as images, are recorded too); fail with what the page shows."""
    try:
        opened.page.wait_for_function(condition, arg=count)
        opened.page.wait_for_load_state("networkidle")
    except PlaywrightTimeoutError:
        shown = opened.page.inner_text("body")[:2000]
        pytest.fail(
            f"{what} not rendered within {BROWSER_DEADLINE_MS} ms; errors: {opened.record.errors};"
            f" the page shows:\n{shown}"
        )


def save_screenshot(opened: OpenedPage, folder: Path, name: str) -> None:
    """Keep what the page looks like, for a human to check."""
    opened.page.screenshot(path=folder / f"{name}.png", full_page=True)


# Swagger UI ------------------------------------------------------------------------------------

#: Rendered: at least `n` operation blocks, or Swagger UI's error in their place.
SWAGGER_UI_RENDERED = f"""n =>
    document.querySelectorAll(".opblock").length >= n
    || document.body.innerText.includes({UNRENDERABLE!r})"""

#: `METHOD /path` of each operation block, from its method label and its data-path attribute.
SWAGGER_UI_OPERATIONS = """blocks => blocks.map(block => {
    const method = block.querySelector(".opblock-summary-method");
    const path = block.querySelector(".opblock-summary-path");
    return `${method ? method.textContent.trim() : "?"} ${path ? path.dataset.path : "?"}`;
})"""


def test_swagger_ui_renders_every_operation_of_the_document(
    open_page: OpenPage, document: dict[str, Any], artifacts: Path
) -> None:
    expected = operations(document)

    opened = open_page("/docs")
    wait_until_rendered(opened, SWAGGER_UI_RENDERED, len(expected), "Swagger UI's operations")
    save_screenshot(opened, artifacts, "swagger-ui")

    assert UNRENDERABLE not in opened.page.inner_text("body")
    rendered = opened.page.eval_on_selector_all(".opblock", SWAGGER_UI_OPERATIONS)
    assert sorted(rendered) == sorted(expected)
    assert f"{opened.origin}/openapi.json" in opened.record.requests


def test_swagger_ui_logs_no_error_and_requests_nothing_outside_the_server(
    open_page: OpenPage, document: dict[str, Any]
) -> None:
    opened = open_page("/docs")
    wait_until_rendered(opened, SWAGGER_UI_RENDERED, len(operations(document)), "Swagger UI")

    assert opened.record.leaving(opened.origin) == []
    assert opened.record.errors == []
    assert f"{opened.origin}/docs/static/swagger-ui-bundle.js" in opened.record.requests


# ReDoc -----------------------------------------------------------------------------------------

#: Rendered: at least `n` operation sections, or ReDoc's error screen in their place.
REDOC_RENDERED = """n =>
    document.querySelectorAll('[data-section-id^="operation/"]').length >= n
    || document.body.innerText.includes("Something went wrong")"""

#: operationId -> the heading ReDoc gives the operation (its summary).
REDOC_OPERATIONS = """sections => Object.fromEntries(sections.map(section => {
    const heading = section.querySelector("h2");
    return [
        section.dataset.sectionId.replace(/^operation\\//, ""),
        heading ? heading.textContent.trim() : null,
    ];
}))"""


def test_redoc_renders_every_operation_with_its_summary(
    open_page: OpenPage, document: dict[str, Any], artifacts: Path
) -> None:
    expected = {
        operation["operationId"]: operation["summary"]
        for operation in operations(document).values()
    }

    opened = open_page("/redoc")
    wait_until_rendered(opened, REDOC_RENDERED, len(expected), "ReDoc's operations")
    save_screenshot(opened, artifacts, "redoc")

    rendered = opened.page.eval_on_selector_all('[data-section-id^="operation/"]', REDOC_OPERATIONS)
    assert rendered == expected
    assert f"{opened.origin}/openapi.json" in opened.record.requests


def test_redoc_logs_no_error_and_requests_nothing_outside_the_server(
    open_page: OpenPage, document: dict[str, Any]
) -> None:
    opened = open_page("/redoc")
    wait_until_rendered(opened, REDOC_RENDERED, len(operations(document)), "ReDoc")

    assert opened.record.leaving(opened.origin) == []
    assert opened.record.errors == []
    assert f"{opened.origin}/redoc/static/redoc.standalone.js" in opened.record.requests


# The request check itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://orchestrator.test:8000/docs", True),
        ("blob:http://orchestrator.test:8000/6f1c", True),
        ("data:image/svg+xml;base64,PHN2Zz4=", True),
        ("http://orchestrator.test:9000/docs", False),
        ("https://orchestrator.test:8000/docs", False),
        ("https://cdn.redoc.ly/redoc/logo-mini.svg", False),
        ("blob:https://cdn.example/6f1c", False),
        ("http://127.0.0.1:8000/docs", False),
    ],
)
def test_a_request_is_local_only_within_the_page_origin(url: str, local: bool) -> None:
    assert is_local(url, "http://orchestrator.test:8000") is local
