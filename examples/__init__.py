"""Runnable examples of the orchestrator (a package only so tests and mypy can name modules)."""

from __future__ import annotations
