"""One runtime drives a PostgreSQL log at a time (until leases share the work): a second server
on the same schema refuses to start, the tools still work beside the first, and the claim dies
with its holder."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.domain.commands import StartWorkflow
from orchestrator.eventstore.errors import StoreInUse
from orchestrator.runtime import build_runtime
from orchestrator.settings import Settings
from tests.contract.conftest import postgres_url

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]


def settings_on(url: str) -> Settings:
    return Settings(database_url=url, task_time_scale=0, log_file="")


async def test_a_second_runtime_on_the_same_schema_refuses_to_start(tmp_path: Path) -> None:
    url = postgres_url(tmp_path)
    first = build_runtime(settings_on(url))
    await first.start()
    try:
        await first.coordinator.start(StartWorkflow(workflow_id=0, name="w"))
        second = build_runtime(settings_on(url))
        with pytest.raises(StoreInUse, match="another orchestrator server is already running"):
            await second.start()
        # A tool's store (no runtime) still opens beside the running server.
        tool = build_runtime(settings_on(url)).backend.store
        await tool.open()
        try:
            assert await tool.head_position() >= 1
        finally:
            await tool.close()
    finally:
        await first.stop()

    third = build_runtime(settings_on(url))  # the claim went with the first runtime
    await third.start()
    try:
        assert await third.store.head_position() >= 1
    finally:
        await third.stop()


async def test_another_schema_of_the_same_database_is_another_log(tmp_path: Path) -> None:
    one = build_runtime(settings_on(postgres_url(tmp_path / "one")))
    two = build_runtime(settings_on(postgres_url(tmp_path / "two")))
    await one.start()
    try:
        await two.start()
        await two.stop()
    finally:
        await one.stop()
