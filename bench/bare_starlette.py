"""The reference for read speed: bare Starlette answering a fixed JSON body of the same size.

python bench/bare_starlette.py PORT BODY_FILE
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def main() -> None:
    """Serve GET /workflow/{id} with the bytes of BODY_FILE."""
    port, body = int(sys.argv[1]), Path(sys.argv[2]).read_bytes()

    async def read(request: Request) -> Response:
        return Response(body, media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b'{"status":"healthy"}', media_type="application/json")

    app = Starlette(routes=[Route("/workflow/{id}", read), Route("/health", health)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
