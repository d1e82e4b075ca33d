"""A lease taken while a renewal of this process's leases was under way is not judged by that
renewal: the renewal's statement may have run before the take committed, so its answer lacks the
lease though no other process has it. Judged so, the lease counted as lost and its workflow's
driver stopped ("taken over by another process") in a server alone on its database."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from orchestrator.engine.ownership import Ownership
from orchestrator.eventstore.postgres import PostgresEventStore
from orchestrator.eventstore.postgres_connection import PostgresDatabase
from orchestrator.eventstore.postgres_leases import PostgresLeases
from orchestrator.settings import parse_database
from tests.contract.conftest import postgres_url

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]


class GatedLeases(PostgresLeases):
    """The real lease rows, with a take held back before its statement and a renewal begun
    after that take held back after its statement."""

    def __init__(self, db: PostgresDatabase) -> None:
        super().__init__(db)
        self.take_asked: float | None = None
        self.take_gate = asyncio.Event()
        self.renewed_meanwhile = asyncio.Event()
        self.renewal_gate = asyncio.Event()

    async def acquire(self, kind: str, aggregate_id: int, holder: str, ttl: float) -> int | None:
        self.take_asked = time.monotonic()
        await self.take_gate.wait()
        return await super().acquire(kind, aggregate_id, holder, ttl)

    async def renew(self, holder: str, ttl: float) -> set[tuple[str, int]]:
        began = time.monotonic()
        found = await super().renew(holder, ttl)
        if self.take_asked is not None and began > self.take_asked and not self.take_gate.is_set():
            self.renewed_meanwhile.set()
            await self.renewal_gate.wait()
        return found


async def test_a_lease_taken_during_a_renewal_is_not_lost(tmp_path: Path) -> None:
    database = parse_database(postgres_url(tmp_path))
    assert database.url is not None and database.schema is not None
    db = PostgresDatabase(database.url, database.schema, 4)
    store = PostgresEventStore(db)
    await store.open()  # creates the schema, the lease table with it
    leases = GatedLeases(db)
    ownership = Ownership(leases, ttl=0.6)  # a renewal every 0.2 s
    lost: list[int] = []

    async def nothing_in_flight() -> list[int]:
        return []

    ownership.watch(
        "workflow",
        in_flight=nothing_in_flight,
        drive=lambda _id: None,
        is_driving=lambda _id: True,
        lose=lost.append,
    )
    await ownership.start()
    try:
        take = asyncio.create_task(ownership.acquire("workflow", 7))
        async with asyncio.timeout(5):
            await leases.renewed_meanwhile.wait()  # its statement ran: no lease 7 in its answer
        leases.take_gate.set()
        assert await take  # committed, while the renewal has not answered yet
        leases.renewal_gate.set()
        await asyncio.sleep(0.5)  # that renewal's answer, and two more renewals

        assert lost == []
        assert ownership.fence_for("workflow", 7) is not None
    finally:
        leases.take_gate.set()
        leases.renewal_gate.set()
        await ownership.stop()
        await store.close()
