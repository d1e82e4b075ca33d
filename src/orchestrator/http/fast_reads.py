"""GET /workflow/{id} answered from the read cache before the middleware stack, checks included.

It is the request clients send most (polling a workflow until it settles). Through the stack it
passes seven ASGI layers (the error handler, the header limit, the Host check, the browser guard,
the trailing slash, the body limit, the exception handler; auth too with API_TOKEN), the router's
regular expressions, a Request, the dispatcher and the metrics wrapper: together they cost more
than reading the cached workflow and sending its encoded body.

So the app answers it first, after making the same checks by calling the very functions the
layers call (`limits.header_refusal`; the Host check, bearer auth and the browser guard, which
`create_app` builds once with `security.refusals` for its layers and this path alike;
`limits.body_headers`, `paths.routed_path`, `dispatch.positive_id`),
builds its answer as the route does (`responses.encoded_workflow_response`) and counts it in
/metrics under the route's template. Only the plain case is taken: GET or HEAD of an existing
workflow's id, no query string, no body, every check passed. Anything else (a refusal, an
unknown or deleted workflow, `at_version`, a read that fails, an app mounted under a prefix)
goes through the whole stack unchanged, which answers it as it always did; its checks then run
twice, which only uncommon requests pay. With CORS_ORIGINS set there is no fast path at all:
CORSMiddleware adds headers (`Vary: Origin`) to every answer.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from orchestrator.http import history_routes
from orchestrator.http.dispatch import Endpoint, RequestObserver, positive_id
from orchestrator.http.endpoint_table import ENDPOINTS, WORKFLOW_PATH
from orchestrator.http.limits import body_headers, header_refusal
from orchestrator.http.paths import routed_path
from orchestrator.http.responses import EncodedReads, encoded_workflow_response
from orchestrator.http.security import Refusal
from orchestrator.runtime import Runtime

#: The path of a read, up to the id: WORKFLOW_PATH without its `{workflow_id}`.
_PREFIX = WORKFLOW_PATH.removesuffix("{workflow_id}")
_READS = frozenset({"GET", "HEAD"})


class FastWorkflowReads:
    """Answers plain reads of existing workflows, or says it did not (having sent nothing)."""

    def __init__(
        self,
        runtime: Runtime,
        encoded: EncodedReads,
        observe: RequestObserver,
        checks: Sequence[Refusal],
    ) -> None:
        self.max_header_bytes = runtime.settings.max_header_bytes
        #: The security middleware's checks, in its order (security.py).
        self.checks = checks
        self.runtime = runtime
        self.encoded = encoded
        self.observe = observe

    async def answered(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer an HTTP request and return True if it is a plain read of an existing
        workflow that passes every check; else return False without sending anything."""
        if scope["method"] not in _READS or scope.get("query_string") or scope.get("root_path"):
            return False
        path = routed_path(scope["path"])
        if not path.startswith(_PREFIX):
            return False
        workflow_id = positive_id(path[len(_PREFIX) :])
        if workflow_id is None:
            return False
        # In the stack's order; a refusal is left to the layer that makes it.
        if (
            header_refusal(scope, self.max_header_bytes) is not None
            or any(check(scope) is not None for check in self.checks)
            or body_headers(scope) != (None, False)
        ):
            return False
        try:
            workflow = await self.runtime.projector.workflow(workflow_id)
            if workflow is None or workflow.deleted:
                return False  # the route's 404
            response = encoded_workflow_response(self.encoded, workflow)
        except Exception:
            return False  # the stack reads it again and answers the error as the route does
        self.observe(scope["method"], WORKFLOW_PATH, response.status_code)
        await response(scope, receive, send)
        return True


def fast_reads_for(
    runtime: Runtime,
    encoded: EncodedReads,
    observe: RequestObserver,
    checks: Sequence[Refusal],
    endpoints: Sequence[Endpoint] = ENDPOINTS,
) -> FastWorkflowReads | None:
    """The fast path for an app serving `endpoints`; None where it would not answer as the stack
    does: with CORS_ORIGINS set (CORSMiddleware adds its headers to every answer), or if the
    table no longer serves GET WORKFLOW_PATH with the handler whose answer it copies.

    `checks` are the ones the app's security layers call (`security.refusals`, built once by
    `create_app` for both)."""
    if runtime.settings.cors_origins:
        return None
    found = [e for e in endpoints if (e.method, e.path) == ("GET", WORKFLOW_PATH)]
    if len(found) != 1 or found[0].handler is not history_routes.get_workflow:
        return None
    return FastWorkflowReads(runtime, encoded, observe, checks)


class OrchestratorApp(Starlette):
    """The Starlette app, with plain workflow reads answered before its middleware stack.

    Only while the app is as `install_fast_reads` found it: middleware, routes or exception
    handlers added afterwards (a host embedding the app with its own guard) would not run on
    the fast path, so any such change turns it off and every request takes the stack.
    """

    fast_reads: FastWorkflowReads | None = None
    _fast_reads_made_for: tuple[int, int, int] = (-1, -1, -1)

    def install_fast_reads(self, fast: FastWorkflowReads | None) -> None:
        """Answer plain workflow reads with `fast` (None: never) while the app stays as now."""
        self.fast_reads = fast
        self._fast_reads_made_for = self._shape()

    def _shape(self) -> tuple[int, int, int]:
        return (len(self.user_middleware), len(self.router.routes), len(self.exception_handlers))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a plain workflow read at once; pass anything else to the stack."""
        fast = self.fast_reads
        if (
            fast is not None
            and scope["type"] == "http"
            and self._shape() == self._fast_reads_made_for
            and await fast.answered(scope, receive, send)
        ):
            return
        await super().__call__(scope, receive, send)
