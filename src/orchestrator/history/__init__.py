"""History tools: replay a stream, verify the log, export and import it."""

from __future__ import annotations
