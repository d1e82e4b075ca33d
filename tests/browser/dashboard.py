"""The dashboard (`/ui`) as the browser tests drive it: a page object over one open page, and a
record of what the page did (its requests, with their headers, and every error it reported).

Every wait is Playwright's own, on a condition, with the page's default deadline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import BrowserContext, ConsoleMessage, Locator, Page, Request, expect
from playwright.sync_api import Error as PlaywrightError

from tests.browser.conftest import BROWSER_DEADLINE_MS

#: Counts the statuses each table row shows, across the table's re-renders (rows are replaced).
WATCH_STATUSES = """() => {
    window.__seen = {};
    const body = document.querySelector("#workflows tbody");
    const note = () => {
        for (const row of body.querySelectorAll("tr[data-id]")) {
            const seen = (window.__seen[row.dataset.id] ||= []);
            if (seen.at(-1) !== row.dataset.status) seen.push(row.dataset.status);
        }
    };
    note();
    new MutationObserver(note).observe(body, {childList: true, subtree: true, attributes: true});
}"""


@dataclass
class SentRequest:
    """One request the page made."""

    method: str
    url: str
    headers: dict[str, str]

    @property
    def path(self) -> str:
        """The path of the URL."""
        return urlsplit(self.url).path

    @property
    def query(self) -> dict[str, list[str]]:
        """The query string, parsed."""
        return parse_qs(urlsplit(self.url).query, keep_blank_values=True)


@dataclass
class PageRecord:
    """Every request the page made and every error it reported (console and uncaught)."""

    requests: list[SentRequest] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def on_request(self, request: Request) -> None:
        """Remember a request with its headers."""
        self.requests.append(SentRequest(request.method, request.url, dict(request.headers)))

    def on_console(self, message: ConsoleMessage) -> None:
        """Remember a console message of type error."""
        if message.type == "error":
            self.errors.append(f"console: {message.text} ({message.location.get('url', '')})")

    def on_page_error(self, error: PlaywrightError) -> None:
        """Remember an uncaught exception."""
        self.errors.append(f"pageerror: {error.message}")

    def leaving(self, origin: str) -> list[str]:
        """URLs of requests that went anywhere but `origin` (data: URLs fetch nothing)."""
        return [
            r.url
            for r in self.requests
            if not r.url.startswith("data:")
            and "{0.scheme}://{0.netloc}".format(urlsplit(r.url.removeprefix("blob:"))) != origin
        ]

    def to(self, path: str, method: str = "GET") -> list[SentRequest]:
        """The requests made to `path` with `method`."""
        return [r for r in self.requests if r.path == path and r.method == method]


class Dashboard:
    """One open dashboard page."""

    def __init__(self, context: BrowserContext, origin: str) -> None:
        self.origin = origin
        self.context = context
        self.page: Page = context.new_page()
        self.record = PageRecord()
        self.page.on("request", self.record.on_request)
        self.page.on("console", self.record.on_console)
        self.page.on("pageerror", self.record.on_page_error)

    def open(self, path: str = "/ui") -> Dashboard:
        """Load the page; return once its feed is live (with a token given, if asked)."""
        response = self.page.goto(self.origin + path)
        assert response is not None and response.status == 200, f"GET {path}: {response}"
        return self

    def wait_live(self) -> None:
        """Until the live feed is connected and the table has loaded once."""
        expect(self.page.locator("#connection")).to_have_attribute("data-state", "live")
        expect(self.page.locator("#page-info")).not_to_have_text("")

    def keep_marker(self) -> None:
        """Mark the document, so `assert_not_reloaded` can tell it is still the same one."""
        self.page.evaluate("() => { window.__kept = 'same document'; }")

    def assert_not_reloaded(self) -> None:
        """The document marked by `keep_marker` is still the one shown."""
        assert self.page.evaluate("() => window.__kept") == "same document"

    def watch_statuses(self) -> None:
        """Start counting the statuses each row shows (see WATCH_STATUSES)."""
        self.page.evaluate(WATCH_STATUSES)

    def statuses_seen(self, workflow_id: int) -> list[str]:
        """The statuses row `workflow_id` showed since `watch_statuses`, in order."""
        seen: Any = self.page.evaluate(f"() => window.__seen[{workflow_id}] || []")
        return [str(status) for status in seen]

    def row(self, workflow_id: int) -> Locator:
        """The table row of one workflow."""
        return self.page.locator(f'#workflows tbody tr[data-id="{workflow_id}"]')

    def rows(self) -> Locator:
        """Every row of the table."""
        return self.page.locator("#workflows tbody tr")

    def shown_ids(self) -> list[int]:
        """The ids of the rows shown, top to bottom."""
        ids: list[str] = self.page.eval_on_selector_all(
            "#workflows tbody tr", "rows => rows.map(r => r.dataset.id)"
        )
        return [int(i) for i in ids]

    def wait_for_ids(self, expected: list[int]) -> None:
        """Until the table shows exactly the rows of `expected`, in that order."""
        self.page.wait_for_function(
            """expected => JSON.stringify(
                [...document.querySelectorAll("#workflows tbody tr")].map(r => Number(r.dataset.id))
            ) === JSON.stringify(expected)""",
            arg=expected,
            timeout=BROWSER_DEADLINE_MS,
        )

    def count_tile(self, status: str) -> int:
        """The number a header tile shows ("all" for the total)."""
        text = self.page.locator(f'#counts li[data-status="{status}"] .count-value').inner_text()
        return int(text.replace(",", ""))

    def start_from_form(
        self, name: str, *, config: str = "", description: str = "", manual: bool = False
    ) -> int:
        """Fill the start form and send it; the new workflow's id, as the form reports it."""
        self.page.fill("#start-name", name)
        self.page.fill("#start-description", description)
        self.page.fill("#start-config", config)
        self.page.check(f'input[name="mode"][value="{"manual" if manual else "automatic"}"]')
        self.page.click("#start-submit")
        result = self.page.locator("#start-result")
        expect(result).to_have_text(re.compile(rf"Started workflow \d+ \({re.escape(name)}\)"))
        workflow_id = result.get_attribute("data-workflow-id")
        assert workflow_id is not None
        return int(workflow_id)

    def open_detail(self, workflow_id: int) -> None:
        """Click the workflow's name in the table; return once its detail shows."""
        self.row(workflow_id).locator("td.name a").click()
        expect(self.page.locator("#detail-view")).to_be_visible()
        expect(self.page.locator("#detail-id")).to_have_text(f"#{workflow_id}")
        expect(self.page.locator("#machine svg")).to_be_visible()

    def current_state(self) -> Locator:
        """The state drawn as current in the detail's state machine."""
        return self.page.locator("#machine .node.current")

    def action(self, name: str) -> Locator:
        """One of the detail's action buttons (next, retry, cancel, delete)."""
        return self.page.locator(f'#actions button[data-action="{name}"]')

    def enabled_actions(self) -> list[str]:
        """The detail's action buttons that can be clicked now."""
        names: list[str] = self.page.eval_on_selector_all(
            "#actions button", "bs => bs.filter(b => !b.disabled).map(b => b.dataset.action)"
        )
        return names

    def wait_for_actions(self, expected: list[str]) -> None:
        """Until exactly `expected` actions can be clicked."""
        self.page.wait_for_function(
            """expected => JSON.stringify(
                [...document.querySelectorAll("#actions button")]
                    .filter(b => !b.disabled).map(b => b.dataset.action)
            ) === JSON.stringify(expected)""",
            arg=expected,
            timeout=BROWSER_DEADLINE_MS,
        )

    def screenshot(self, folder: Path, name: str) -> Path:
        """Save the whole page as `name`.png in `folder`; print where, for whoever looks."""
        path = folder / f"{name}.png"
        self.page.screenshot(path=path, full_page=True)
        print(f"screenshot: {path}")
        return path

    def assert_clean(self, *, allowed: tuple[str, ...] = ()) -> None:
        """No error in the page (but those containing one of `allowed`), no request elsewhere."""
        errors = [e for e in self.record.errors if not any(a in e for a in allowed)]
        assert errors == []
        assert self.record.leaving(self.origin) == []
