"""Loading the user's task modules (TASKS_MODULES, `serve --tasks`) into a TaskRegistry.

Anything wrong stops the start with one line naming the module: it cannot be imported, it
declares no task, or two tasks claim one state or one type name. The working directory is put
on the import path first, as uvicorn does for its app, so `--tasks mypkg.tasks` finds the
user's package where they start the server.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from orchestrator.engine.tasks import DuplicateTask, TaskRegistry


class TaskLoadError(Exception):
    """A task module cannot be used; the message is one line that says which and why."""


def load_task_modules(names: Sequence[str], registry: TaskRegistry | None = None) -> TaskRegistry:
    """A registry with the built-in tasks and every task the modules `names` declare."""
    registry = registry or TaskRegistry()
    if names and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # a user's module can raise anything at import
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise TaskLoadError(
                f"cannot import the task module {name!r}: {type(exc).__name__}: {detail}"
            ) from exc
        try:
            found = registry.add_module(module)
        except DuplicateTask as exc:
            raise TaskLoadError(f"task module {name!r}: {exc}") from exc
        if found == 0:
            raise TaskLoadError(
                f"the task module {name!r} declares no task: decorate its functions with "
                "@step(...) or @task_type(...) from orchestrator.tasks"
            )
    return registry
