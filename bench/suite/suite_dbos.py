"""The reference for e2e_workflows_per_s: DBOS (durable execution as a library, PyPI `dbos`)
running a five-step workflow with instant steps on the same database kind, from 16 threads.

It runs in a process of its own (`python -m suite.suite_dbos ...`, printing one JSON line), so
DBOS's global state, threads and SQLAlchemy pools never share a process with a measurement.
On SQLite its system database is a file of its own in WAL mode (the mode our store uses; DBOS
leaves SQLite's default rollback journal otherwise), synchronous=FULL (SQLite's default, which
DBOS keeps).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import importlib.util
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from suite.context import Context
from suite.figures import Reference

NAME = "dbos_workflows_per_s"
UNIT = "workflows/s"
STEPS = 5


async def dbos_reference(ctx: Context, workflows: int, threads: int) -> Reference:
    """DBOS's workflows/s, or a Reference without a value saying why there is none."""
    if importlib.util.find_spec("dbos") is None:
        return Reference(
            NAME, None, UNIT, "dbos is not installed: .venv/bin/pip install -e '.[bench]'"
        )
    version = importlib.metadata.version("dbos")
    url = await ctx.target.fresh(ctx, "dbos")
    settings = ctx.target.dbos_settings(url)
    ctx.say(f"DBOS {version}: {workflows} five-step workflows from {threads} threads")
    bench = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "suite.suite_dbos", "--workflows", str(workflows)]
    command += ["--threads", str(threads), "--url", settings["system_database_url"]]
    if "schema" in settings:
        command += ["--schema", settings["schema"]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(bench), *sys.path])}
    process = await asyncio.create_subprocess_exec(
        *command,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=url_folder(ctx, settings),
    )
    ctx.stack.callback(_kill, process)
    out, err = await process.communicate()
    if process.returncode != 0:
        last = (err.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        return Reference(NAME, None, UNIT, f"DBOS {version} failed on {ctx.target.kind}: {last}")
    rate = float(json.loads(out.decode().strip().splitlines()[-1])["rate"])
    note = f"DBOS {version}, {STEPS} instant steps, {threads} threads, {ctx.target.describe()}"
    return Reference(NAME, rate, UNIT, note)


def url_folder(ctx: Context, settings: dict[str, str]) -> Path:
    """Where the DBOS process runs: the folder of its SQLite file, else a new folder."""
    url = settings["system_database_url"]
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).parent
    return ctx.folder("dbos-run")


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()


def measure(url: str, schema: str | None, workflows: int, threads: int) -> float:
    """Launch DBOS on `url`, run `workflows` workflows of STEPS instant steps from `threads`
    threads, each calling the workflow function; workflows/s from the first call to the last
    return."""
    # Imported by name, untyped: dbos is the bench extra, absent where CI runs mypy.
    DBOS: Any = importlib.import_module("dbos").DBOS

    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode = WAL")  # kept in the file: DBOS's connections use it
        conn.close()
    config: dict[str, Any] = {"name": "bench", "system_database_url": url, "log_level": "WARNING"}
    if schema is not None:
        config["dbos_system_schema"] = schema
    DBOS(config=config)

    def add(workflow: int, number: int) -> int:
        return workflow + number

    # Wrapped by calls, not decorator syntax: DBOS is untyped here (see above).
    step: Callable[[int, int], int] = DBOS.step()(add)

    def steps(workflow: int) -> int:
        return sum(step(workflow, number) for number in range(STEPS))

    five_steps: Callable[[int], int] = DBOS.workflow()(steps)

    DBOS.launch()
    try:
        five_steps(-1)  # the first run pays for lazy set-up; it is not counted
        began = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(five_steps, range(workflows)))
        return workflows / (time.perf_counter() - began)
    finally:
        DBOS.destroy()


def main() -> None:
    """Print {"rate": workflows/s} as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--schema")
    parser.add_argument("--workflows", type=int, required=True)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    rate = measure(args.url, args.schema, args.workflows, args.threads)
    print(json.dumps({"rate": rate}))


if __name__ == "__main__":
    main()
