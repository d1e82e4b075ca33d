"""Writing tasks: what a task module imports.

    from orchestrator.tasks import TaskContext, step, task_type

    @step("EXECUTE", timeout=30, retries=2)
    def crunch(ctx: TaskContext) -> dict: ...

    @task_type("resize")
    async def resize(ctx: TaskContext) -> dict: ...

Load the module with `orchestrator serve --tasks mypkg.tasks` (or TASKS_MODULES); see the
README's "Writing tasks".
"""

from __future__ import annotations

from orchestrator.engine.executor import TaskCancelled
from orchestrator.engine.task_context import NoRetry, TaskContext
from orchestrator.engine.task_loading import TaskLoadError, load_task_modules
from orchestrator.engine.task_specs import TaskSpec, step, task_type
from orchestrator.engine.task_types import InvalidTaskConfig
from orchestrator.engine.tasks import TaskRegistry

__all__ = [
    "InvalidTaskConfig",
    "NoRetry",
    "TaskCancelled",
    "TaskContext",
    "TaskLoadError",
    "TaskRegistry",
    "TaskSpec",
    "load_task_modules",
    "step",
    "task_type",
]
