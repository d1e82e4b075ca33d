"""The dashboard (`/ui`) with 100,000 workflows in the store, measured in the browser.

Builds the store once (kept and reused: pass --rebuild to build it again) by running workflows
through the real engine, in-process, with instant tasks, as a server would run them: most to
COMPLETE, every 50th FAILED (simulated failure), every 100th left waiting in INIT (manual), every
200th CANCELLED. Then starts a real `orchestrator serve` on it and opens /ui in Debian's
headless Chromium (through Playwright) several times, each in a fresh browser context, and
prints the medians of what the page's Performance API says:

- first paint and first contentful paint of /ui (the page itself);
- the first table page painted (rows in the table, then the frame after: two animation frames);
- the next page, the last page (the deepest OFFSET), a status filter and a name search (one
  that matches nothing, which reads every row), each from the click or keystroke to the rows
  painted, and the server's own time for each list request (Resource Timing);
- GET /execution/stats and GET /execution/activity (the header) as the page fetched them.

    python bench/bench_ui.py                      # 100,000 workflows, SQLite in the temp folder
    python bench/bench_ui.py --workflows 20000 --rounds 3
    python bench/bench_ui.py --database-url postgresql://postgres@127.0.0.1:5432/test?schema=bench_ui
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.request import urlopen

from bench_workflows import free_port
from playwright.sync_api import ConsoleMessage, Page, sync_playwright

from orchestrator.domain.commands import StartWorkflow
from orchestrator.runtime import build_runtime
from orchestrator.settings import Settings

CHROMIUM = "/usr/bin/chromium"
#: The name the page is opened under (Chromium maps it to 127.0.0.1), as in tests/browser.
PAGE_HOST = "orchestrator.test"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-proxy-server",
    f"--host-resolver-rules=MAP {PAGE_HOST} 127.0.0.1",
]
NAMES = ("nightly-report", "etl-orders", "invoice-run", "backup", "ml-train", "sync-crm")
BATCH = 500

#: Installed before the page's own scripts: when the table first holds rows, and the frame after.
FIRST_ROWS = """
window.__bench = {};
new MutationObserver((_, observer) => {
  const connection = document.querySelector("#connection");
  if (connection && connection.dataset.state === "live") {
    observer.disconnect();
    window.__bench.live = performance.now();
  }
}).observe(document, {childList: true, subtree: true, attributes: true});
new MutationObserver((_, observer) => {
  const body = document.querySelector("#workflows tbody");
  if (body && body.children.length) {
    observer.disconnect();
    window.__bench.rows = performance.now();
    requestAnimationFrame(() => requestAnimationFrame(() => {
      window.__bench.rowsPainted = performance.now();
    }));
  }
}).observe(document, {childList: true, subtree: true});
"""

#: Does `act` (JS run in the page) and waits for the table to change and the next frame; ms.
TIMED = """async (act) => {
  const body = document.querySelector("#workflows tbody");
  const changed = new Promise((resolve) => {
    const observer = new MutationObserver(() => { observer.disconnect(); resolve(); });
    observer.observe(body, {childList: true});
  });
  const began = performance.now();
  new Function(act)();
  await changed;
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  return performance.now() - began;
}"""

#: How long the page's last request whose URL contains `part` took (Resource Timing), ms.
LAST_REQUEST_MS = """(part) => {
  const found = performance.getEntriesByType("resource").filter((e) => e.name.includes(part));
  const last = found.at(-1);
  return last ? last.responseEnd - last.startTime : null;
}"""


def workflow_command(i: int) -> tuple[StartWorkflow, bool]:
    """The i-th workflow of the store, and whether to cancel it once started."""
    name = f"{NAMES[i % len(NAMES)]}-{i:06d}"
    config: dict[str, Any] = {"iterations": 100 + i % 900}
    if i % 50 == 0:
        config["simulate_failure"] = True
    manual = i % 100 == 1 or i % 200 == 7
    command = StartWorkflow(workflow_id=0, name=name, config=config, auto_start=not manual)
    return command, i % 200 == 7


async def fill(database_url: str, workflows: int) -> None:
    """Run `workflows` workflows through the engine (instant tasks); wait for the read models."""
    # One warning per simulated failure would bury the progress lines.
    logging.getLogger("orchestrator").setLevel(logging.ERROR)
    runtime = build_runtime(
        Settings(database_url=database_url, task_time_scale=0, log_file="", max_workers=8)
    )
    await runtime.start()
    try:
        began = time.perf_counter()
        for start in range(0, workflows, BATCH):
            commands = [workflow_command(i) for i in range(start, min(start + BATCH, workflows))]
            outcomes = await asyncio.gather(
                *(runtime.coordinator.start(command) for command, _ in commands)
            )
            cancels = [
                runtime.coordinator.cancel(outcome.workflow.workflow_id)
                for outcome, (_, cancel) in zip(outcomes, commands, strict=True)
                if cancel
            ]
            await asyncio.gather(*cancels)
            await runtime.coordinator.wait_idle()
            done = start + len(commands)
            if done % 10_000 < BATCH:
                rate = done / (time.perf_counter() - began)
                print(f"  {done:,} workflows ({rate:,.0f}/s)", flush=True)
        head = await runtime.store.head_position()
        print(f"  log: {head:,} events; waiting for the read models", flush=True)
        await runtime.projector.wait_for(head)
    finally:
        await runtime.stop()


def get_json(url: str) -> Any:
    with urlopen(url, timeout=30) as response:
        return json.loads(response.read())


@contextmanager
def serve(database_url: str, folder: Path) -> Iterator[int]:
    """A real `orchestrator serve` on the store; its port, once /health answers."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ALLOWED_HOSTS": PAGE_HOST,
        "TASK_TIME_SCALE": "0",
        "LOG_FILE": str(folder / "server.log"),
    }
    output = (folder / "server.out").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "serve", "--port", str(port)],
        env=env,
        cwd=folder,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the server exited; see {folder / 'server.out'}")
            try:
                if get_json(f"http://127.0.0.1:{port}/health")["status"] == "healthy":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not answer /health within 10 minutes")
            time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=60)
        output.close()


def measure_once(page: Page, origin: str) -> dict[str, float]:
    """Open /ui once and time what the dashboard does; ms by figure."""
    page.goto(f"{origin}/ui")
    page.wait_for_function("() => window.__bench && window.__bench.rowsPainted", timeout=60_000)
    page.wait_for_function("() => document.querySelector('#connection').dataset.state === 'live'")
    paints = {
        entry["name"]: entry["startTime"]
        for entry in page.evaluate(
            "() => performance.getEntriesByType('paint').map((e) => e.toJSON())"
        )
    }
    bench = page.evaluate("() => window.__bench")
    figures = {
        "/ui first paint": paints.get("first-paint", float("nan")),
        "/ui first contentful paint": paints.get("first-contentful-paint", float("nan")),
        "  live feed connected": bench["live"],
        "first table page painted": bench["rowsPainted"],
    }
    page.wait_for_function("() => document.querySelector('#counts li') !== null")
    page.wait_for_function("() => document.querySelector('#started-total').textContent !== ''")
    for label, part in (
        ("  GET /execution/stats (server)", "/execution/stats"),
        ("  GET /execution/activity (server)", "/execution/activity"),
        ("  GET /workflows first page (server)", "/workflows?"),
    ):
        figures[label] = page.evaluate(LAST_REQUEST_MS, part)
    steps = (
        ("next page", "document.querySelector('#next-page').click()", "skip="),
        ("last page (deepest offset)", "document.querySelector('#last-page').click()", "skip="),
        (
            "status filter FAILED",
            "const s = document.querySelector('#status-filter'); s.value = 'FAILED';"
            " s.dispatchEvent(new Event('change'))",
            "status_filter=FAILED",
        ),
        (
            "name search, no match (250 ms debounce incl.)",
            "const s = document.querySelector('#status-filter'); s.value = '';"
            " const n = document.querySelector('#name-search'); n.value = 'no-such-name';"
            " n.dispatchEvent(new Event('input'))",
            "name=no-such-name",
        ),
        (
            "name search, 10 old matches (250 ms debounce incl.)",
            "const n = document.querySelector('#name-search'); n.value = '-00099';"
            " n.dispatchEvent(new Event('input'))",
            "name=-00099",
        ),
    )
    for label, act, part in steps:
        figures[label] = page.evaluate(TIMED, act)
        figures[f"  {label} (server)"] = page.evaluate(LAST_REQUEST_MS, part)
    return figures


def console_errors(page: Page) -> list[str]:
    """A list that collects every console error the page logs from now on."""
    errors: list[str] = []

    def note(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", note)
    return errors


def measure(port: int, rounds: int) -> dict[str, list[float]]:
    """`rounds` fresh page loads; every figure of every round."""
    origin = f"http://{PAGE_HOST}:{port}"
    found: dict[str, list[float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for _ in range(rounds):
                context = browser.new_context(viewport={"width": 1400, "height": 900})
                context.set_default_timeout(60_000)
                context.add_init_script(FIRST_ROWS)
                page = context.new_page()
                errors = console_errors(page)
                for name, value in measure_once(page, origin).items():
                    found.setdefault(name, []).append(value)
                context.close()
                if errors:
                    raise SystemExit(f"the page reported errors: {errors}")
        finally:
            browser.close()
    return found


def activity_cold(port: int) -> None:
    """GET /execution/activity on the freshly started server until it has counted the whole
    last hour: how many calls, how long each, how long in all (the page asks once a second)."""
    took: list[float] = []
    began = time.perf_counter()
    while True:
        start = time.perf_counter()
        answer = get_json(f"http://127.0.0.1:{port}/execution/activity")
        took.append((time.perf_counter() - start) * 1000)
        if answer["complete"]:
            break
    counted = sum(m["started"] + m["finished"] for m in answer["minutes"])
    print(
        f"activity, cold: {len(took)} calls to count the last hour ({counted:,} starts and "
        f"finishes), {statistics.median(took):.0f} ms median, {max(took):.0f} ms max per call, "
        f"{(time.perf_counter() - began):.1f} s in all; then "
        f"{timed_ms(lambda: get_json(f'http://127.0.0.1:{port}/execution/activity')):.1f} ms warm"
    )


def timed_ms(call: Callable[[], object]) -> float:
    """How long `call` takes, in ms."""
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workflows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5, help="page loads (medians are shown)")
    parser.add_argument("--database-url", help="default: a SQLite file in the temp folder")
    parser.add_argument("--rebuild", action="store_true", help="build the store again")
    args = parser.parse_args()
    folder = Path(tempfile.gettempdir()) / "orchestrator-bench-ui"
    folder.mkdir(exist_ok=True)
    url = args.database_url or f"sqlite:///{folder / f'ui-{args.workflows}.db'}"
    built = folder / f"built-{hashlib.sha256(url.encode()).hexdigest()[:12]}-{args.workflows}"
    if url.startswith("sqlite:///") and args.rebuild:
        for suffix in ("", "-wal", "-shm", ".anchors"):
            Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
        built.unlink(missing_ok=True)
    if not built.exists() or args.rebuild:
        print(f"building the store: {args.workflows:,} workflows through the engine", flush=True)
        began = time.perf_counter()
        asyncio.run(fill(url, args.workflows))
        built.write_text(url)
        print(f"  built in {time.perf_counter() - began:,.0f} s", flush=True)
    with serve(url, folder) as port:
        stats = get_json(f"http://127.0.0.1:{port}/execution/stats")["workflows"]
        if stats["total"] < args.workflows:
            raise SystemExit(
                f"the store holds {stats['total']:,} workflows, not {args.workflows:,}: "
                "run again with --rebuild"
            )
        health = get_json(f"http://127.0.0.1:{port}/health")
        print(
            f"store: {stats['total']:,} workflows ({stats['complete']:,} COMPLETE, "
            f"{stats['failed']:,} FAILED, {stats['init']:,} INIT, {stats['cancelled']:,} "
            f"CANCELLED), {health['log_position']:,} events; Chromium, {args.rounds} loads"
        )
        activity_cold(port)
        figures = measure(port, args.rounds)
    width = max(len(name) for name in figures)
    print(f"{'figure':{width}}  median ms     min ms     max ms")
    for name, values in figures.items():
        clean = [v for v in values if v is not None]
        if not clean:
            continue
        print(
            f"{name:{width}}  {statistics.median(clean):9.1f}  {min(clean):9.1f}  {max(clean):9.1f}"
        )


if __name__ == "__main__":
    main()
