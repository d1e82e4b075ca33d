"""One line, not a traceback, when `orchestrator serve` cannot start.

The usual reasons are the machine's: a read-only folder, file or file system, a file that is not
a database, one written by a newer release. Inside uvicorn they surface as "Application startup
failed" after a long traceback (and, without uvicorn's own `run`, exit code 0). So `serve` opens
the event store once before uvicorn starts (`store_open_problem`), and the app runs inside
`OneLineStartup`, which keeps any other start-up failure for `serve` to print as one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.backend import make_backend
from orchestrator.eventstore.errors import EventStoreError
from orchestrator.eventstore.sqlite_guard import set_aside_logs
from orchestrator.settings import Database


def unwritable(path: Path) -> str | None:
    """Why the database file at `path` (there or not yet) cannot be written; None if no reason
    shows. SQLite writes two files beside it (-wal, -shm), so its folder must be writable too."""
    folder = path.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "the file system is read-only"
    except OSError:
        return None  # the folder is missing or unreachable: the caller's own error says so
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is read-only"
    if not os.access(folder, os.W_OK):
        return "the folder is read-only"
    return None


def cannot_open(path: Path, detail: str) -> str:
    """The line for a database that cannot be opened: the read-only cause if there is one, with
    what to do; else `detail`."""
    reason = unwritable(path)
    if reason is None:
        return f"cannot open the database {path}: {detail}"
    return (
        f"cannot open the database {path}: {reason} (the server writes the file and, beside it, "
        f"{path.name}-wal and {path.name}-shm; make {path.parent} writable or set DATABASE_URL "
        "to a writable place)"
    )


def failure_line(exc: BaseException, path: str | None) -> str:
    """`exc` as one line; for a store error on a file, with the read-only cause if that is it."""
    cause = exc.__cause__
    detail = str(cause) if isinstance(cause, sqlite3.Error) else str(exc)
    detail = " ".join(detail.split()) or type(exc).__name__
    if path is not None and isinstance(exc, EventStoreError | sqlite3.Error | OSError):
        return cannot_open(Path(path), detail)
    return f"cannot start: {type(exc).__name__}: {detail}"


def orphaned_wal(path: str) -> str | None:
    """Why serving `path` now would lose events, or None: the file is missing or empty while a
    write-ahead log of it is there (it was deleted, perhaps under a running server).

    SQLite deletes the -wal of an empty database file when it opens it, and that log holds every
    event since the last checkpoint: on a young database, all of them. A server that saw its file
    go set its log aside (eventstore/sqlite_guard.py); starting afresh would reuse every id.
    """
    with contextlib.suppress(OSError):
        if os.path.getsize(path) > 0:
            return None
    wal = f"{path}-wal"
    logs = [wal] if os.path.exists(wal) and os.path.getsize(wal) > 0 else []
    logs += set_aside_logs(path)
    if not logs:
        return None
    return (
        f"the database file {path} is missing or empty, but {logs[-1]} holds a write-ahead log "
        "of it: the file was deleted, perhaps while a server ran, and starting now would lose "
        f"those events and reuse their ids; put the file back (and that log as {wal}), or move "
        f"{', '.join(logs)} elsewhere to start afresh"
    )


def store_open_problem(database: Database) -> str | None:
    """Open the event store of `database` once and close it: what went wrong, as one line, or
    None.

    This creates the schema of a new file, as the server's own start would a moment later.
    """

    async def open_and_close() -> None:
        store = make_backend(database).store
        await store.open()
        await store.close()

    try:
        asyncio.run(open_and_close())
    except (EventStoreError, sqlite3.Error, OSError) as exc:
        return failure_line(exc, database.path)
    return None


class OneLineStartup:
    """The app, with a failed start-up kept in `failure` instead of logged as a traceback.

    Starlette reports a lifespan that raised to the server with the whole traceback as text,
    which uvicorn logs; this blanks that text and keeps the exception for `serve` to print.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.failure: BaseException | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass every connection through; watch the lifespan's start-up."""
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_quietly(message: Message) -> None:
            nonlocal started
            if message["type"] == "lifespan.startup.complete":
                started = True
            elif message["type"] == "lifespan.startup.failed":
                message = {**message, "message": ""}
            await send(message)

        try:
            await self.app(scope, receive, send_quietly)
        except Exception as exc:
            if not started:
                self.failure = exc
            raise
