"""The reference for read speed: bare Starlette under the orchestrator's own uvicorn settings.

python bench/bare_starlette.py PORT [BODY_FILE]

GET /workflow/{id} answers the bytes of BODY_FILE (bench_workflows.py: a body of the same size as
the orchestrator's), or without it a small JSON dict (bench/run.py's starlette_ceiling_rps).
uvicorn runs with the arguments `orchestrator serve` gives it (http/connections.py: the same
protocol class, connection cap and keep-alive), so only the application differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from orchestrator.http.connections import server_options
from orchestrator.settings import Settings


def main() -> None:
    """Serve GET /workflow/{id} and GET /health on 127.0.0.1:PORT."""
    port = int(sys.argv[1])
    body = Path(sys.argv[2]).read_bytes() if len(sys.argv) > 2 else None

    async def read(request: Request) -> Response:
        if body is None:
            return JSONResponse({"workflow_id": request.path_params["id"], "status": "COMPLETE"})
        return Response(body, media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b'{"status":"healthy"}', media_type="application/json")

    app = Starlette(routes=[Route("/workflow/{id}", read), Route("/health", health)])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        **server_options(Settings()),
    )


if __name__ == "__main__":
    main()
