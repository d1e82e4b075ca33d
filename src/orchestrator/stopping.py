"""Stopping background tasks: what every loop of the server (the writer, the projector, the
feed, the checkpoints, leases, statistics, dictionaries) does when it closes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def stop_tasks(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel these tasks (None stands for none) and wait until each has ended. Their
    cancellation, the end asked for, is not raised here; any other failure of theirs is."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task
