"""The whole benchmark suite in one command: every figure next to its reference, both measured
in this run, and their ratio.

    python bench/run.py [--quick] [--json FILE] [--database-url postgresql://...]
                        [--only NAME,NAME] [--scale FACTOR]

It starts what it needs (servers on loopback ports, temporary databases: SQLite files in a
temporary folder, or PostgreSQL schemas dropped at the end), measures, stops all of it (also on
an error or Ctrl-C), and prints the table on stdout; progress goes to stderr. `--quick` uses
smaller counts (under 3 minutes on a 2-core machine). The figures are in bench/suite/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import sys
import tempfile
from pathlib import Path

from suite.context import Context, Plan, loop_factory
from suite.figures import Figure, table, write_json
from suite.registry import chosen, measure
from suite.targets import SQLiteTarget, Target


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts: under 3 minutes")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="postgresql://user@host:port/db: run on PostgreSQL (a schema per figure, dropped "
        "at the end) instead of temporary SQLite files",
    )
    parser.add_argument(
        "--only", metavar="NAMES", help="comma-separated figure names: measure only these"
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        metavar="FACTOR",
        help="multiply every count and duration (for tests: 0.05)",
    )
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error(f"--scale must be above 0, got {args.scale}")
    return args


async def choose_target(url: str | None) -> Target:
    """SQLite without a URL; PostgreSQL with one, or SystemExit with one line saying why not."""
    if url is None:
        return SQLiteTarget()
    if not url.startswith(("postgresql://", "postgres://")):
        raise SystemExit(
            "bench/run.py: --database-url takes a postgresql:// URL (SQLite runs on temporary "
            "files without it)"
        )
    from suite.target_postgres import PostgresTarget, postgres_problem

    problem = await postgres_problem(url)
    if problem is not None:
        raise SystemExit(f"bench/run.py: cannot run on PostgreSQL: {problem}")
    return PostgresTarget(url)


async def run_suite(args: argparse.Namespace, workdir: Path) -> tuple[list[Figure], str]:
    """Measure the chosen figures; with what they were measured on. Whatever they started is
    stopped before this returns."""
    current = asyncio.current_task()
    assert current is not None
    # SIGTERM stops the run as Ctrl-C does: the task is cancelled and the stack unwinds.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, current.cancel)
    target = await choose_target(args.database_url)
    only = [name.strip() for name in args.only.split(",") if name.strip()] if args.only else None
    try:
        specs = chosen(target.kind, only)
    except ValueError as exc:
        raise SystemExit(f"bench/run.py: {exc}") from None
    ctx = Context(Plan(quick=args.quick, scale=args.scale), target, workdir)
    async with ctx.stack:
        figures = [await measure(ctx, spec) for spec in specs]
    return figures, target.describe()


def heading(args: argparse.Namespace, target: str) -> str:
    """What the table was measured on."""
    mode = "quick" if args.quick else "full"
    scale = f", scale {args.scale:g}" if args.scale != 1 else ""
    return (
        f"bench/run.py ({mode}{scale}) on {target}; {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, write the JSON; 1 if a figure could not be measured."""
    args = parse_arguments(argv)
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        try:
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                figures, described = runner.run(run_suite(args, Path(folder)))
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("bench/run.py: interrupted; everything it started is stopped", file=sys.stderr)
            return 130
    print(heading(args, described))
    print()
    print(table(figures))
    if args.json is not None:
        write_json(figures, args.json)
    return 1 if any(figure.value is None for figure in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
