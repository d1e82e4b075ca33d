"""Every backend tells its commit observers (metrics) each commit's size and duration."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from orchestrator.eventstore.base import EventStore, NewEvent

pytestmark = pytest.mark.anyio


async def test_every_append_is_counted_in_exactly_one_commit(store: EventStore) -> None:
    commits: list[tuple[int, float]] = []
    store.commit_observers.append(lambda size, seconds: commits.append((size, seconds)))

    await asyncio.gather(
        *(
            store.append(f"s-{n}", 0, [NewEvent(type="Happened", data=msgspec.json.encode(n))])
            for n in range(20)
        )
    )

    assert sum(size for size, _ in commits) == 20
    assert all(size >= 1 and seconds >= 0 for size, seconds in commits)
