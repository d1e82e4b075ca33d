"""What `orchestrator serve` claims before anything else runs: its port and its database file.

The port is bound first, so a busy port fails fast, before the database is opened or a single
workflow resumed. Then the SQLite file is locked for this process: two servers on one file would
both resume the same workflows and hand out the same ids (the store's expected versions keep the
log consistent, but tasks would run twice). Several processes on one database need PostgreSQL,
with its leases.

The lock is an OS lock (`flock`) on the database file itself, held by an open descriptor for the
life of the process: the kernel releases it when the process ends, however it ends, so a crash
never leaves a stale lock behind. SQLite's own locks are POSIX record locks, which `flock` does not
touch, and the read-only tools (`replay`, `verify`, `export`) take no such lock, so they still
work beside a running server.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path

from orchestrator.startup import cannot_open


class ServeRefused(Exception):
    """The server cannot start; the message is the one line to print."""


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host`:`port`, ready to hand to uvicorn."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ServeRefused(f"bad setting: API_HOST {host!r}: {exc}") from None
    family, kind, proto, _, address = infos[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(address)
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        reason = "it is in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise ServeRefused(
            f"cannot listen on {host}:{port}: {reason} (set API_PORT or --port to another port)"
        ) from None
    listener.set_inheritable(True)
    return listener


class DatabaseLock:
    """An exclusive `flock` on a SQLite database file, held until `release()` or exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise ServeRefused naming the file if another server holds it."""
        try:
            # The file may not exist yet: SQLite treats an empty file as a new database.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            # One line naming the cause: a read-only folder, file or file system, most often.
            raise ServeRefused(cannot_open(self.path, exc.strerror or str(exc))) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise ServeRefused(
                    f"another orchestrator server is already serving {self.path}; stop it first "
                    "(one server per SQLite file: several processes need PostgreSQL)"
                ) from None
            raise ServeRefused(f"cannot lock the database {self.path}: {exc.strerror}") from None
        self._fd = fd

    def release(self) -> None:
        """Let the lock go (closing the descriptor releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
