"""The orchestrator inside your own asyncio program: the server's runtime, without HTTP.

```python
from orchestrator import Orchestrator

async with Orchestrator("sqlite:///./workflow.db") as orchestrator:
    started = await orchestrator.start("nightly-report", config={"iterations": 10})
    workflow = await orchestrator.wait(started.workflow_id, timeout=60)
```

It is the runtime `orchestrator serve` runs (`build_runtime`, `Runtime.start` and `stop`), so it
keeps the server's promises: every command goes through the coordinator or the task runner
(decided against the log, appended with the expected version), and returns once the read models
include what it appended, so the next read sees it (read-your-writes). Workflows in flight when
the last run ended resume on entry. One process drives a SQLite file at a time: the `flock` that
`orchestrator serve` takes (serving.DatabaseLock) is taken here too, so an Orchestrator and a
server, or two Orchestrators, never drive the same file at once.

Refusals are the domain's and the engine's exceptions, as the HTTP layer maps them:
WorkflowNotFound and TaskNotFound (404 there), InvalidTransition and StepInProgress (409),
InvalidTaskConfig (422), TooBusy (429), ShuttingDown (503). This module adds LifecycleError (used
outside `async with`, or entered twice), StartRefused (the database cannot be driven from here),
VersionNotFound (time travel past a stream's end) and WaitTimeout (a `TimeoutError`).
"""

from __future__ import annotations

from orchestrator.embedded.errors import LifecycleError, StartRefused, VersionNotFound, WaitTimeout
from orchestrator.embedded.orchestrator import TERMINAL_TASK_STATUSES, Orchestrator
from orchestrator.embedded.stats import PoolStats, Stats
from orchestrator.embedded.waiting import TERMINAL_STATES
from orchestrator.history.replay import ReplayedEvent

__all__ = [
    "TERMINAL_STATES",
    "TERMINAL_TASK_STATUSES",
    "LifecycleError",
    "Orchestrator",
    "PoolStats",
    "ReplayedEvent",
    "StartRefused",
    "Stats",
    "VersionNotFound",
    "WaitTimeout",
]
