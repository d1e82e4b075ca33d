"""Shared fixtures: async tests run on asyncio through anyio's pytest plugin."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Only asyncio: the engine is built on asyncio's loop and executor."""
    return "asyncio"
