"""The `orchestrator` command: serve, demo, replay, verify, export, export-anchors, import,
import-original, rebuild-projections."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from orchestrator import __version__
from orchestrator.settings import Settings, SettingsError, redact_url


def configure_logging(settings: Settings) -> None:
    """Log to the console and to the log file, one line per record."""
    from orchestrator.logfile import rotating_log_file

    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if settings.log_file:
        handlers.append(rotating_log_file(settings))
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


#: The umask `serve` runs under: every file it creates (database, -wal, -shm, log files) is
#: readable by its user only. The database holds every workflow's config and results, the log
#: their names and errors. PostgreSQL's server sets the same umask for the same reason.
PRIVATE_UMASK = 0o077


def serve(settings: Settings) -> int:
    """Run the HTTP server until interrupted; every file it creates is private to its user."""
    from orchestrator.exposure import exposure_refusal

    # Before the port is bound: a server the network could drive without a token never starts.
    refusal = exposure_refusal(settings)
    if refusal is not None:
        print(f"orchestrator: {refusal}", file=sys.stderr)
        return 2
    previous_umask = os.umask(PRIVATE_UMASK)
    try:
        return _serve(settings)
    finally:
        os.umask(previous_umask)


#: The exit status after Ctrl-C (128 + SIGINT), as shells report a program it stopped.
_INTERRUPTED = 130


def _serve(settings: Settings) -> int:
    import uvicorn

    from orchestrator.engine.executor import TASK_THREAD_PREFIX
    from orchestrator.engine.task_loading import TaskLoadError, load_task_modules
    from orchestrator.http.app import create_app, runtime_of
    from orchestrator.http.connections import server_options
    from orchestrator.serving import DatabaseLock, ServeRefused, bind_listener
    from orchestrator.startup import (
        OneLineStartup,
        failure_line,
        orphaned_wal,
        store_open_problem,
    )

    # The user's tasks first: a module that cannot be loaded is one line, before anything is
    # claimed (the port, the database).
    try:
        registry = load_task_modules(settings.tasks_modules)
    except TaskLoadError as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 2
    # Then the port: a busy port fails here, before the database is opened or anything resumed.
    try:
        listener = bind_listener(settings.api_host, settings.api_port)
    except ServeRefused as exc:
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 2
    lock: DatabaseLock | None = None
    try:
        path = settings.database.path
        if path is not None:
            from orchestrator.eventstore.sqlite_schema import (
                OriginalDatabase,
                refuse_original_database,
            )

            try:
                refuse_original_database(path)
            except OriginalDatabase as exc:  # before uvicorn, which would bury it in a traceback
                raise ServeRefused(str(exc)) from None
            orphan = orphaned_wal(path)  # before the lock, which creates a missing file
            if orphan is not None:
                raise ServeRefused(orphan)
            lock = DatabaseLock(Path(path))
            lock.acquire()
            # Opened once before uvicorn, so that a read-only folder or a file that is not a
            # database is one line here instead of a traceback from uvicorn's start-up.
            problem = store_open_problem(settings.database)
            if problem is not None:
                raise ServeRefused(problem)
    except ServeRefused as exc:
        listener.close()
        print(f"orchestrator: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    logging.getLogger(__name__).info(
        "orchestrator %s on http://%s:%d with %s, %d workers",
        __version__,
        settings.api_host,
        settings.api_port,
        redact_url(settings.database_url),
        settings.max_workers,
    )
    if settings.tasks_modules:
        steps = registry.steps()
        own = [
            f"{state.value}={spec.name}"
            for state, spec in steps.items()
            if spec.source != "built-in"
        ]
        logging.getLogger(__name__).info(
            "tasks from %s: steps %s; task types %s",
            ", ".join(settings.tasks_modules),
            ", ".join(own) or "none",
            ", ".join(registry.type_names()) or "none",
        )
    from orchestrator.exposure import exposure_warning

    warning = exposure_warning(settings)
    if warning is not None:
        logging.getLogger(__name__).warning("%s", warning)
    if settings.api_reload:
        logging.getLogger(__name__).warning("API_RELOAD is ignored: the engine must not restart")
    app = create_app(settings, registry, claim_database=False)  # locked above
    guarded = OneLineStartup(app)
    config = uvicorn.Config(
        guarded,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        log_config=None,
        access_log=settings.access_log,
        # Connection limits, slow clients, and the shutdown grace (http/connections.py).
        **server_options(settings),
    )
    runtime = runtime_of(app)
    _tune_collector()

    class Server(uvicorn.Server):
        """Begins the runtime's shutdown as soon as a signal arrives: open event streams end,
        no new step begins, and the grace for running steps starts counting.

        uvicorn waits for every response to finish before the app's shutdown runs, and an
        event stream never finishes by itself.
        """

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be gone already
                asyncio.get_event_loop().call_soon_threadsafe(runtime.begin_shutdown)
            super().handle_exit(sig, frame)

    interrupted = False
    try:
        Server(config).run(sockets=[listener])
    except SystemExit:  # uvicorn exits by itself when the start-up failed: say why, below
        if guarded.failure is None:
            raise
    except KeyboardInterrupt:
        # Ctrl-C: uvicorn has shut down gracefully by now, then raised the signal again so the
        # process ends by it, which in Python is a KeyboardInterrupt out of here, with a
        # traceback after "Finished server process". The shell's status for it, without one.
        interrupted = True
    finally:
        listener.close()
        if lock is not None:
            lock.release()
    if guarded.failure is not None:  # uvicorn logged one line; this says why
        path_of_lock = str(lock.path) if lock is not None else None
        print(f"orchestrator: {failure_line(guarded.failure, path_of_lock)}", file=sys.stderr)
        return 2
    if any(t.name.startswith(TASK_THREAD_PREFIX) and t.is_alive() for t in threading.enumerate()):
        # A task still running in a worker thread (one past its timeout, say) would hold the
        # process open until it returns. Its step is recorded as started and runs again at the
        # next start, so nothing is lost by leaving now.
        logging.shutdown()
        os._exit(_INTERRUPTED if interrupted else 0)
    return _INTERRUPTED if interrupted else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `orchestrator` console script."""
    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"orchestrator {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the HTTP server")
    serve_parser.add_argument("--host", help="overrides API_HOST")
    serve_parser.add_argument("--port", type=_port, help="overrides API_PORT")
    serve_parser.add_argument(
        "--tasks",
        type=_task_modules,
        metavar="MODULES",
        help="comma-separated Python modules of your tasks (overrides TASKS_MODULES)",
    )
    demo_parser = commands.add_parser("demo", help="replay the demonstration against a server")
    demo_parser.add_argument("--url", help="the server (default http://API_HOST:API_PORT)")
    demo_parser.add_argument("--interactive", action="store_true", help="offer a menu")
    replay_parser = commands.add_parser("replay", help="a workflow's events, from the log")
    replay_parser.add_argument("workflow_id", type=_positive_int)
    replay_parser.add_argument("--at-version", type=_positive_int, help="stop after this event")
    replay_parser.add_argument("--json", action="store_true", help="one JSON object")
    verify_parser = commands.add_parser(
        "verify", help="check the log: chain, versions, payloads, transitions, checkpoints"
    )
    verify_parser.add_argument(
        "--anchors", metavar="FILE", help="also hold the log to the checkpoints exported to FILE"
    )
    verify_parser.add_argument(
        "--processes",
        type=_positive_int,
        metavar="N",
        help="check the log in N processes at once (default: one per core, up to 4, for a "
        "log of 100,000 events or more, 300,000 on PostgreSQL; 1 keeps it to one core)",
    )
    commands.add_parser("export", help="write the log as JSON lines to stdout")
    commands.add_parser("export-anchors", help="write the head checkpoints as JSON lines to stdout")
    commands.add_parser("import", help="read JSON lines from stdin into an empty database")
    original_parser = commands.add_parser(
        "import-original", help="import the original orchestrator's SQLite database"
    )
    original_parser.add_argument("path", help="the original's database file")
    rebuild_parser = commands.add_parser(
        "rebuild-projections", help="rebuild the read models from the log and swap them in"
    )
    rebuild_parser.add_argument(
        "--check", action="store_true", help="only compare a rebuild with the live read models"
    )
    rebuild_parser.add_argument(
        "--processes",
        type=_positive_int,
        metavar="N",
        help="fold a SQLite log in N processes at once (default: one per core, up to 4, for a "
        "log of 100,000 events or more; 1 keeps it to one core)",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"orchestrator: bad setting: {exc}", file=sys.stderr)
        return 2
    if args.command in (
        "replay",
        "verify",
        "export",
        "export-anchors",
        "import",
        "rebuild-projections",
    ):
        return _history(args, settings)
    if args.command == "import-original":
        from orchestrator import cli_history as history

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        return asyncio.run(history.import_original_command(settings, args.path))
    if args.command == "demo":
        from orchestrator.demo import run_demo

        host = _client_host(settings.api_host)
        if ":" in host:  # an IPv6 address goes in brackets in a URL
            host = f"[{host}]"
        url = args.url or f"http://{host}:{settings.api_port}"
        token = settings.api_tokens[0] if settings.api_tokens else None
        if token is not None and args.url is not None and not _is_local(args.url, settings):
            print(
                "orchestrator demo: not sending API_TOKEN to a non-local --url; "
                "its requests go without a token",
                file=sys.stderr,
            )
            token = None
        return run_demo(url, is_interactive=args.interactive, token=token)
    if args.command == "serve":
        if args.host:
            settings = _replace(settings, api_host=args.host)
        if args.port:
            settings = _replace(settings, api_port=args.port)
        if args.tasks is not None:
            settings = _replace(settings, tasks_modules=args.tasks)
        return serve(settings)
    parser.error(f"unknown command {args.command}")
    return 2


def _history(args: argparse.Namespace, settings: Settings) -> int:
    from orchestrator import cli_history as history

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "replay":
        return asyncio.run(
            history.with_backend(
                settings,
                lambda backend: history.replay_command(
                    backend, args.workflow_id, args.at_version, args.json
                ),
            )
        )
    if args.command == "verify":
        return asyncio.run(
            history.with_backend(
                settings,
                lambda backend: history.verify_command(
                    backend,
                    key=settings.integrity_key,
                    anchors_file=args.anchors,
                    processes=args.processes,
                ),
            )
        )
    if args.command in ("export", "export-anchors"):
        export = (
            history.export_command if args.command == "export" else history.export_anchors_command
        )
        try:
            return asyncio.run(history.with_backend(settings, export))
        except BrokenPipeError:
            # The reader stopped early (`export | head`): nothing is wrong with the log. Point
            # stdout at nothing so the interpreter's last flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    if args.command == "import":
        return asyncio.run(
            history.with_backend(
                settings,
                lambda backend: history.import_command(backend, key=settings.integrity_key),
                must_exist=False,
            )
        )
    return asyncio.run(
        history.with_backend(
            settings,
            lambda backend: history.rebuild_command(
                backend, check_only=args.check, processes=args.processes
            ),
        )
    )


def _task_modules(text: str) -> tuple[str, ...]:
    from orchestrator.settings import SettingsError, module_names

    try:
        return module_names("--tasks", text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    # ArgumentTypeError, not ValueError: argparse then prints this sentence after the argument's
    # name instead of "invalid _positive_int value".
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 1..65535, got {text!r}")
    return value


def _is_local(url: str, settings: Settings) -> bool:
    from orchestrator.demo_url import BadUrl, is_local_server, normalize_url

    try:
        return is_local_server(normalize_url(url), settings.api_host)
    except BadUrl:
        return False  # the demo refuses it anyway


def _client_host(host: str) -> str:
    # A server listening on every address is reached through loopback.
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _replace(settings: Settings, **changes: object) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]


def _tune_collector() -> None:
    """Fewer, cheaper garbage collections for a long-running server: what start-up made (modules,
    the app, the registry) is set aside for good, and young objects are collected every 20,000
    allocations instead of 700. A busy server allocates a great deal of short-lived objects (a
    request, an event, a step), and the collector walked the caches' long-lived ones over and over
    (up to 87 ms pauses measured under the live-feed load); end to end, 4 runs side by side:
    493-496 workflows/s before, 528-612 after. Cyclic garbage is still collected."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
