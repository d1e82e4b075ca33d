"""Events shaped like the engine's, for the tests of compact rows on both backends."""

from __future__ import annotations

import msgspec

from orchestrator.eventstore.base import NewEvent


def payload(kind: str, n: int) -> bytes:
    """A payload shaped like the engine's (a type, a time, a state and a result)."""
    return msgspec.json.encode(
        {
            "type": kind,
            "at": f"2026-01-01T00:00:{n % 60:02d}.{n:06d}Z",
            "state": ["INIT", "PREPARE", "EXECUTE"][n % 3],
            "result": {"status": "done", "iteration": n, "note": "é ✓"},
        }
    )


def event(kind: str, n: int, actor: str = "engine") -> NewEvent:
    """An event of type `kind`, its payload numbered `n`."""
    return NewEvent(
        type=kind, data=payload(kind, n), metadata={"actor": actor, "n": n % 2}, schema_version=2
    )
