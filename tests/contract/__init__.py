"""Contract tests: every event-store backend passes one suite; the read models are kept from it."""

from __future__ import annotations
