"""Browser tests: /docs and /redoc rendered by headless Chromium from a real server."""

from __future__ import annotations
