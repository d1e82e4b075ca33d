"""A SQLite store creates its database, and so its -wal and -shm files, readable by its user only,
whatever the process's umask: the log holds every workflow's config and results."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from orchestrator.eventstore.base import NewEvent
from orchestrator.eventstore.sqlite import SQLiteEventStore


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The usual umask (022), so a file is private only if the store makes it so."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.anyio
@pytest.mark.usefixtures("permissive_umask")
async def test_a_new_database_and_its_wal_and_shm_files_are_0600(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = SQLiteEventStore(str(path))
    await store.open()
    try:
        event = NewEvent(type="Happened", data=msgspec.json.encode({"n": 1}), metadata={})
        await store.append("thing-1", 0, [event])
        files = [path, path.with_name("events.db-wal"), path.with_name("events.db-shm")]
        modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    finally:
        await store.close()

    assert modes == {"events.db": "0o600", "events.db-wal": "0o600", "events.db-shm": "0o600"}


@pytest.mark.anyio
@pytest.mark.usefixtures("permissive_umask")
async def test_an_existing_database_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    path.touch(mode=0o640)
    store = SQLiteEventStore(str(path))
    await store.open()
    await store.close()

    assert stat.S_IMODE(path.stat().st_mode) == 0o640
