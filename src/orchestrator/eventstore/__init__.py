"""The append-only log. Backends see events only as (type, bytes, metadata)."""

from __future__ import annotations
