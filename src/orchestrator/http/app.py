"""The app factory: routes, error handlers, security and body limits, the runtime's lifespan."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from orchestrator.engine.tasks import TaskRegistry
from orchestrator.http.activity import ActivityCounts
from orchestrator.http.dispatch import build_routes
from orchestrator.http.docs import docs_routes
from orchestrator.http.endpoint_table import ENDPOINTS
from orchestrator.http.errors import exception_handlers
from orchestrator.http.event_feed import EventFeed
from orchestrator.http.fast_reads import OrchestratorApp, fast_reads_for
from orchestrator.http.history_routes import sse_frame
from orchestrator.http.idempotency import IdempotentCommands
from orchestrator.http.limits import BodyLimitMiddleware, header_refusal
from orchestrator.http.metrics import Metrics, metrics_route
from orchestrator.http.paths import TrailingSlashMiddleware
from orchestrator.http.responses import EncodedReads, runtime_of
from orchestrator.http.security import RefusalMiddleware, refusals
from orchestrator.http.ui import ui_routes
from orchestrator.runtime import build_runtime
from orchestrator.serving import DatabaseLock
from orchestrator.settings import Settings
from orchestrator.sized_cache import CacheBudget

#: `runtime_of` is re-exported: the CLI and the tests reach an app's runtime through here.
__all__ = ["cors_middleware", "create_app", "runtime_of"]


def create_app(
    settings: Settings | None = None,
    registry: TaskRegistry | None = None,
    *,
    claim_database: bool = True,
) -> Starlette:
    """A Starlette app whose lifespan starts and stops a runtime built from `settings`.

    The lifespan first locks a SQLite database file for this runtime, as `serve` does (which
    locks it before it builds the app, and says so with `claim_database=False`): an app mounted
    in another application refuses to start on a file a server or an embedded Orchestrator
    already runs on, instead of resuming the same workflows twice.
    """
    runtime = build_runtime(settings or Settings.from_env(), registry)
    idempotency = IdempotentCommands(runtime)
    metrics = Metrics(runtime)
    # One reader of the log for every /events/stream client (started by the first one).
    feed = EventFeed(runtime.store, sse_frame, runtime.stopping)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        path = runtime.settings.database.path
        lock = DatabaseLock(Path(path)) if claim_database and path is not None else None
        if lock is not None:
            lock.acquire()  # ServeRefused, naming the file, fails the start-up
        try:
            await runtime.start()
            try:
                yield
            finally:
                runtime.stopping.set()  # open event streams end first
                await feed.stop()
                await runtime.stop()
        finally:
            if lock is not None:
                lock.release()

    header_limit = functools.partial(header_refusal, max_bytes=runtime.settings.max_header_bytes)
    # Built once: the stack's layers and the fast path (fast_reads.py) call these very checks.
    host, *guards = refusals(runtime.settings)

    app = OrchestratorApp(
        routes=[
            *build_routes(ENDPOINTS, guard=idempotency, observe=metrics.observe_request),
            metrics_route(metrics),
            *docs_routes(
                auth=bool(runtime.settings.api_tokens),
                registry=runtime.coordinator.registry,
                type_names=runtime.tasks.type_names(),
            ),
            *ui_routes(auth=bool(runtime.settings.api_tokens)),
        ],
        exception_handlers=exception_handlers(),
        middleware=[
            Middleware(RefusalMiddleware, refusal=header_limit),
            # In security.py's order: the Host check, CORS (if configured), the other guards.
            Middleware(RefusalMiddleware, refusal=host),
            *cors_middleware(runtime.settings.cors_origins),
            *(Middleware(RefusalMiddleware, refusal=guard) for guard in guards),
            Middleware(TrailingSlashMiddleware),
            Middleware(
                BodyLimitMiddleware,
                max_bytes=runtime.settings.max_body_bytes,
                timeout=runtime.settings.client_timeout_seconds,
            ),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    encoded_reads = EncodedReads(
        max_bytes=CacheBudget(runtime.settings.cache_memory_mb).encoded_reads
    )
    app.state.encoded_reads = encoded_reads
    # GET /workflow/{id} answered before the stack, after the same checks (fast_reads.py).
    app.install_fast_reads(
        fast_reads_for(runtime, encoded_reads, metrics.observe_request, [host, *guards])
    )
    app.state.idempotency = idempotency
    app.state.metrics = metrics
    app.state.event_feed = feed
    # Workflows started and finished per minute (GET /execution/activity), from the log.
    app.state.activity = ActivityCounts(runtime.store)
    return app


def cors_middleware(origins: tuple[str, ...]) -> list[Middleware]:
    """CORS for the configured origins only; with none, browsers keep the same-origin rule."""
    if not origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Content-Type", "Authorization", "Last-Event-ID", "Idempotency-Key"],
            # So a page can tell a repeated answer from a first one.
            expose_headers=["Idempotent-Replayed"],
            max_age=600,
        )
    ]
