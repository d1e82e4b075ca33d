"""The app factory: routes, error handlers and the runtime's lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from orchestrator.engine.tasks import TaskRegistry
from orchestrator.http import routes
from orchestrator.http.errors import exception_handlers
from orchestrator.http.limits import BodyLimitMiddleware
from orchestrator.runtime import Runtime, build_runtime
from orchestrator.settings import Settings


def create_app(settings: Settings | None = None, registry: TaskRegistry | None = None) -> Starlette:
    """A Starlette app whose lifespan starts and stops a runtime built from `settings`."""
    runtime = build_runtime(settings or Settings.from_env(), registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = Starlette(
        routes=[
            Route("/workflow/start", routes.start_workflow, methods=["POST"]),
            Route("/workflow/{workflow_id}", routes.workflow_resource, methods=["GET", "DELETE"]),
            Route("/workflow/{workflow_id}/next", routes.next_step, methods=["POST"]),
            Route("/workflow/{workflow_id}/retry", routes.retry_workflow, methods=["POST"]),
            Route("/workflow/{workflow_id}/cancel", routes.cancel_workflow, methods=["POST"]),
            Route("/execution/stats", routes.execution_stats, methods=["GET"]),
            Route("/health", routes.health, methods=["GET"]),
        ],
        exception_handlers=exception_handlers(),
        middleware=[Middleware(BodyLimitMiddleware, max_bytes=runtime.settings.max_body_bytes)],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app


def runtime_of(app: Starlette) -> Runtime:
    """The runtime behind an app made by `create_app`."""
    runtime: Runtime = app.state.runtime
    return runtime
