"""What a task function is given: the step or task it runs, its config, and its ways back to
the engine (progress, cancellation, a logger)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.domain.states import State
from orchestrator.engine.executor import TaskCancelled

ProgressSink = Callable[[float, "str | None"], None]

_task_log = logging.getLogger("orchestrator.tasks")


@dataclass(frozen=True)
class TaskContext:
    """What a task knows about the step (or standalone task) it runs.

    A long task should watch `cancelled` (wait on it instead of sleeping, or check it between
    pieces of work): it is set when the workflow is cancelled, the step times out or the server
    stops, and a task that returns then frees its thread at once.
    """

    #: The workflow the step belongs to (a standalone task's workflow, or None).
    workflow_id: int | None
    #: The state whose step runs (None for a standalone task).
    state: State | None
    #: The config: the workflow's (or task's) dict, or an instance of the task's declared
    #: config Struct, converted and checked before anything was recorded.
    config: Any
    #: How many times the workflow was retried after FAILED (a standalone task: its retries).
    retries: int
    time_scale: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)
    #: Set when the step should stop early: the workflow was cancelled, the step timed out, or
    #: the server is stopping (the step then runs again at the next start).
    cancelled: threading.Event = field(default_factory=threading.Event)
    #: Which attempt of this step this is: 1, then 2.. while the task's `retries` allow.
    attempt: int = 1
    #: The task's registered name.
    task_name: str = ""
    #: The standalone task's id (None for a workflow step).
    task_id: int | None = None
    #: The results the workflow's earlier steps recorded, by state ("PREPARE": {...}); a
    #: step reads what the steps before it produced here. Empty for a standalone task.
    results: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    _progress: ProgressSink | None = None

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose lines name the task, the workflow (or task) and the attempt."""
        where = f"workflow {self.workflow_id}" if self.task_id is None else f"task {self.task_id}"
        prefix = f"{self.task_name or 'task'} ({where}, attempt {self.attempt})"
        return _PrefixedLog(_task_log, {"prefix": prefix})

    def progress(self, fraction: float, note: str | None = None) -> None:
        """Report how far the task got (0 to 1) and, optionally, what it is doing.

        Recorded in the workflow's history at most once a second (the latest report wins) and
        shown in the workflow's read as `current_step.progress`; free to call often. A
        standalone task's reports are logged only. ValueError for a fraction outside 0..1.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise ValueError(f"progress is a number from 0 to 1, not {fraction!r}")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress is a number from 0 to 1, not {fraction!r}")
        if note is not None and not isinstance(note, str):
            raise ValueError(f"a progress note is text, not {type(note).__name__}")
        if self._progress is not None:
            self._progress(float(fraction), note)

    def simulate_work(self, seconds: float) -> None:
        """Wait `seconds` scaled by TASK_TIME_SCALE (0 makes it instant); TaskCancelled if the
        step is cancelled meanwhile."""
        scaled = seconds * self.time_scale
        if scaled > 0 and self.cancelled.wait(scaled):
            what = self.state.value if self.state is not None else self.task_name
            raise TaskCancelled(f"the {what} step was cancelled")


class NoRetry(Exception):
    """Raise it (or a subclass) from a task to fail the step at once, whatever its `retries`:
    for failures another attempt cannot mend (a 404, a malformed document)."""


class _PrefixedLog(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        return f"{extra.get('prefix', '')}: {msg}", kwargs
