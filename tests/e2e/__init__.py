"""End-to-end tests: the real `orchestrator serve` process over HTTP and its SQLite file."""

from __future__ import annotations
