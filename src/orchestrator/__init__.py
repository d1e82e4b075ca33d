"""An event-sourced async workflow orchestrator.

`from orchestrator import create_app` gives the HTTP API as an ASGI app (to mount in another
Starlette or FastAPI application), `from orchestrator import Orchestrator` the same engine in
process, without HTTP. Both are imported on first use, so `import orchestrator` (and the HTTP
client, `orchestrator.client`) loads neither Starlette nor the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.embedded import Orchestrator
    from orchestrator.http.app import create_app

__version__ = "0.1.0"

__all__ = ["Orchestrator", "__version__", "create_app"]

#: Names importable from `orchestrator`, and the module each is loaded from on first use.
_LAZY = {
    "Orchestrator": "orchestrator.embedded",
    "create_app": "orchestrator.http.app",
}


def __getattr__(name: str) -> Any:
    """Load `Orchestrator` and `create_app` when first asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # asked once: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
