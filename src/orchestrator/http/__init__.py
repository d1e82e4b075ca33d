"""The Starlette HTTP API (not a top-level `http` package: that would shadow the stdlib)."""

from __future__ import annotations
