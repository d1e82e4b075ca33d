"""The report pipeline example: see README.md here; run it with run.py."""

from __future__ import annotations
