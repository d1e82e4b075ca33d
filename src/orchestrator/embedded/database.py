"""One process per SQLite file: the checks and the lock `orchestrator serve` takes first."""

from __future__ import annotations

from pathlib import Path

from orchestrator.embedded.errors import StartRefused
from orchestrator.serving import DatabaseLock, ServeRefused
from orchestrator.settings import Settings
from orchestrator.startup import orphaned_wal


def claim_database(settings: Settings) -> DatabaseLock | None:
    """Lock the SQLite file of `settings` for this process (None for memory://), refusing what
    `serve` refuses before it opens one; StartRefused says why.

    A few stat calls and a non-blocking `flock`: quick enough to run on the event loop. The
    store refuses the original orchestrator's database itself when it opens.
    """
    path = settings.database.path
    if path is None:
        return None  # memory://: nothing to share
    orphan = orphaned_wal(path)  # before the lock, which creates a missing file
    if orphan is not None:
        raise StartRefused(path, orphan)
    lock = DatabaseLock(Path(path))
    try:
        lock.acquire()
    except ServeRefused as exc:
        raise StartRefused(path, str(exc)) from None
    return lock
