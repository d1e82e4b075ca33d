"""The `orchestrator` command: `serve` runs the HTTP server."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from orchestrator import __version__
from orchestrator.settings import Settings, SettingsError


def configure_logging(settings: Settings) -> None:
    """Log to the console and to the log file, one line per record."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if settings.log_file:
        handlers.append(logging.FileHandler(settings.log_file, encoding="utf-8"))
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def serve(settings: Settings) -> int:
    """Run the HTTP server until interrupted."""
    import uvicorn

    from orchestrator.http.app import create_app

    configure_logging(settings)
    logging.getLogger(__name__).info(
        "orchestrator %s on http://%s:%d with %s, %d workers",
        __version__,
        settings.api_host,
        settings.api_port,
        settings.database_url,
        settings.max_workers,
    )
    if settings.api_reload:
        logging.getLogger(__name__).warning("API_RELOAD is ignored: the engine must not restart")
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        log_config=None,
        access_log=False,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `orchestrator` console script."""
    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"orchestrator {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the HTTP server")
    serve_parser.add_argument("--host", help="overrides API_HOST")
    serve_parser.add_argument("--port", type=int, help="overrides API_PORT")
    demo_parser = commands.add_parser("demo", help="replay the demonstration against a server")
    demo_parser.add_argument("--url", help="the server (default http://API_HOST:API_PORT)")
    demo_parser.add_argument("--interactive", action="store_true", help="offer a menu")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"orchestrator: bad setting: {exc}", file=sys.stderr)
        return 2
    if args.command == "demo":
        from orchestrator.demo import run_demo

        url = args.url or f"http://{_client_host(settings.api_host)}:{settings.api_port}"
        return run_demo(url, is_interactive=args.interactive)
    if args.command == "serve":
        if args.host:
            settings = _replace(settings, api_host=args.host)
        if args.port:
            settings = _replace(settings, api_port=args.port)
        return serve(settings)
    parser.error(f"unknown command {args.command}")
    return 2


def _client_host(host: str) -> str:
    # A server listening on every address is reached through loopback.
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _replace(settings: Settings, **changes: object) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, **changes)  # type: ignore[arg-type]
