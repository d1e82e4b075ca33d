"""Fixtures that render the real server's pages in Debian's headless Chromium through Playwright.

Playwright drives the Chromium that Debian's `chromium` package installs (`.ci/run` installs it
when missing); Playwright's own browser download is never used, as these machines cannot fetch
it. Without that binary the tests skip, except under CI=true, where they fail: CI must run them.

The browser reaches the server under a name that only it resolves (`PAGE_HOST`), not 127.0.0.1:
viewers such as Swagger UI behave differently on localhost (its online-validator badge, for
one), and the pages are meant to behave as they do on a deployed server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.e2e.conftest import ServerProcess, free_port

#: Where Debian's `chromium` package puts the browser.
CHROMIUM = Path("/usr/bin/chromium")
INSTALL_HINT = "install Debian's chromium: apt-get install -y chromium"
#: The host name the pages are opened under; Chromium maps it to 127.0.0.1 (see CHROMIUM_ARGS).
PAGE_HOST = "orchestrator.test"
#: Flags that let Chromium run headless as root here and keep it from calling home by itself.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # No proxy from the environment, which would get the mapped name below.
    "--no-proxy-server",
    f"--host-resolver-rules=MAP {PAGE_HOST} 127.0.0.1",
)
#: How long one browser action (a page load, a wait for rendering) may take.
BROWSER_DEADLINE_MS = 20_000


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium; skipped when it is missing, except under CI=true, which must run it."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    message = f"{CHROMIUM} is missing: {INSTALL_HINT}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, so the browser tests must run, but {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    """One headless Chromium for the module; each test opens its own context in it."""
    # Module scope, not session: Playwright's sync API runs its own event loop, which must be
    # gone before other modules' anyio tests run theirs.
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, args=list(CHROMIUM_ARGS), timeout=BROWSER_DEADLINE_MS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real `orchestrator serve` on a free port and a temp database, shared by the module."""
    server = ServerProcess(
        workdir=tmp_path_factory.mktemp("docs-server"),
        port=free_port(),
        # The pages are opened under PAGE_HOST, a name the server must be told it answers to.
        overrides={"ALLOWED_HOSTS": f"{PAGE_HOST},localhost"},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page_origin(docs_server: ServerProcess) -> str:
    """The server's origin as the browser sees it: the mapped name and the real port."""
    return f"http://{PAGE_HOST}:{docs_server.port}"


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: $BROWSER_ARTIFACTS_DIR when set, else the test's tmp_path."""
    folder = os.environ.get("BROWSER_ARTIFACTS_DIR")
    if not folder:
        return tmp_path
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path
