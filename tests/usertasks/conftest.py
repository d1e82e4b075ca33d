"""The e2e suite's server fixtures, for the tests that serve user tasks through the real CLI."""

from __future__ import annotations

from tests.e2e.conftest import start_server as start_server
