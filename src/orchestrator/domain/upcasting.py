"""Schema evolution: events are stored forever in the shape they were written in; upcasters
turn an older shape into the current one when it is read. The stored bytes never change.

Schema 1 (the first released shape) differs from schema 2 in two events:
- `StepSucceeded` kept the task's result under `output` (now `result`);
- `WorkflowTransitioned` named its states `source` and `target` (now `from_state`, `to_state`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

#: The shape events are written in now.
CURRENT_SCHEMA = 2

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _rename(**names: str) -> Upcaster:
    def upcast(payload: dict[str, Any]) -> dict[str, Any]:
        return {names.get(key, key): value for key, value in payload.items()}

    return upcast


#: (schema the payload is in, event type) -> the function that lifts it one schema up.
UPCASTERS: dict[tuple[int, str], Upcaster] = {
    (1, "StepSucceeded"): _rename(output="result"),
    (1, "WorkflowTransitioned"): _rename(source="from_state", target="to_state"),
}


def upcast(data: bytes, schema_version: int) -> bytes:
    """The payload in the current shape (unchanged, and not parsed, when it already is)."""
    if schema_version == CURRENT_SCHEMA:
        return data
    if schema_version > CURRENT_SCHEMA:
        raise ValueError(
            f"event schema {schema_version} is newer than this release's {CURRENT_SCHEMA}"
        )
    payload: dict[str, Any] = json.loads(data)
    for version in range(schema_version, CURRENT_SCHEMA):
        step = UPCASTERS.get((version, str(payload.get("type"))))
        if step is not None:
            payload = step(payload)
    return json.dumps(payload).encode()
