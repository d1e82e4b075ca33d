"""What the SQLite store watches on the machine: that its file is still the one it opened, and
whether its last write failed for want of space or a disk error.

A database file deleted or replaced (`rm`, `mv other.db x.db`) while the server runs goes
unnoticed by SQLite: its connections keep the old inode open and commit into it, every command
is acknowledged, and at the next start those events are gone and their ids are handed out again.
So before each commit batch the store compares the identity (device, inode) of the file it opened
with what the path names now, one `stat` per batch, and once they differ it refuses every write
until it is restarted: nothing is ever committed into the orphaned file after that.

The old file's write-ahead log (-wal, -shm) stays at the path, and SQLite would read it as the
log of whatever file is there next: on a replacement, old pages would show through the new
file; on an empty file (a deleted one, created again), SQLite deletes the log, events and all.
So when the change is seen those two files are renamed aside (`x.db-wal.orphaned-<time>`), and
`orchestrator serve` refuses to start on a missing or empty file while they are there.

A full disk is different: it passes. The store remembers whether its last write failed with
SQLITE_FULL or an I/O error, so /health can say so, and forgets it at the next write that works.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time

from orchestrator.eventstore.errors import StoreUnavailable

#: Primary result codes of a write that failed because of the machine, not the request:
#: SQLITE_IOERR, SQLITE_READONLY, SQLITE_FULL, SQLITE_CANTOPEN.
_MACHINE_CODES = frozenset({10, 8, 13, 14})
#: The files SQLite keeps beside the database in WAL mode.
COMPANIONS = ("-wal", "-shm")
#: Inserted between a companion's name and the time it was set aside.
ORPHANED = ".orphaned-"

Identity = tuple[int, int]


def is_machine_failure(exc: BaseException) -> bool:
    """True for a SQLite error that says the disk or file system failed the write."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in _MACHINE_CODES


class FileGuard:
    """The identity of the open database file, and the last write failure the machine caused."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._identity: Identity | None = None
        self._companions: dict[str, Identity | None] = {}
        self._replaced: str | None = None
        #: Why the last write failed, while no write has worked since (None: the last one did).
        self.write_failure: str | None = None

    def remember(self) -> None:
        """Record the identity of the file just opened, and of its -wal and -shm.

        Called once SQLite has opened them: from then on its connections hold them open, so no
        inode can be freed and its number reused by a new file at the same path.
        """
        self._identity = _identity(self.path)
        self._companions = {suffix: _maybe_identity(self.path + suffix) for suffix in COMPANIONS}
        self._replaced = None
        self.write_failure = None

    def check(self) -> None:
        """Raise StoreUnavailable if the file at the path is no longer the one opened.

        Once detected it stays detected: writes stay refused until the server restarts.
        """
        problem = self.replaced()
        if problem is not None:
            raise StoreUnavailable(problem)

    def check_known(self) -> None:
        """Raise StoreUnavailable if the file was already seen replaced (no `stat`: for each
        append as it is queued; its batch is checked with `check` before it commits)."""
        if self._replaced is not None:
            raise StoreUnavailable(self._replaced)

    def replaced(self) -> str | None:
        """Why the path no longer names the open file, or None while it does."""
        identity = self._identity
        if self._replaced is None and identity and _maybe_identity(self.path) != identity:
            self._replaced = (
                f"the database file {self.path} was deleted or replaced while the server ran; "
                "restart it once the right file is back at that path (writes are refused until "
                "then: they would go to a file no one can open again)"
                f"{self._set_aside()}{_copy_hint(identity)}"
            )
        return self._replaced

    def _set_aside(self) -> str:
        # Only the files this process opened: a -wal that came with the replacement stays.
        stamp = time.strftime("%Y%m%dT%H%M%S")
        moved: list[str] = []
        for suffix, identity in self._companions.items():
            source = self.path + suffix
            if identity is not None and _maybe_identity(source) == identity:
                with contextlib.suppress(OSError):
                    os.rename(source, f"{source}{ORPHANED}{stamp}")
                    moved.append(f"{source}{ORPHANED}{stamp}")
        return f"; the old file's write-ahead log is kept as {moved[0]}" if moved else ""

    def failed(self, exc: BaseException) -> None:
        """Note a failed write; only machine failures (full disk, I/O) count."""
        if is_machine_failure(exc):
            self.write_failure = (
                f"the last write to {self.path} failed: {exc}; commands answer 503 until a "
                "write succeeds again (free some disk space, or check the disk)"
            )

    def succeeded(self) -> None:
        """Note a committed write: the disk takes writes again."""
        self.write_failure = None

    def problem(self) -> str | None:
        """Why writes are refused or failing now, or None while they work."""
        return self.replaced() or self.write_failure


def set_aside_logs(path: str) -> list[str]:
    """The write-ahead logs a server set aside for the database at `path`, oldest first."""
    folder, name = os.path.split(path)
    prefix = f"{name}-wal{ORPHANED}"
    try:
        found = sorted(entry for entry in os.listdir(folder or ".") if entry.startswith(prefix))
    except OSError:
        return []
    return [os.path.join(folder, entry) for entry in found]


def _identity(path: str) -> Identity:
    found = os.stat(path)
    return found.st_dev, found.st_ino


def _maybe_identity(path: str) -> Identity | None:
    try:
        return _identity(path)
    except OSError:
        return None


def _copy_hint(identity: Identity) -> str:
    # The process still holds the old file open: on Linux it can be copied out of /proc until
    # the server stops, with every event it holds. Looked for once, when the change is seen.
    fds = f"/proc/{os.getpid()}/fd"
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(fds), key=lambda n: int(n) if n.isdigit() else -1):
            if _maybe_identity(f"{fds}/{name}") == identity:
                return f"; until the server stops, the old file can be copied from {fds}/{name}"
    return ""
