"""GET /openapi.json and GET /docs: Swagger UI served from the packaged swagger-ui-bundle.

The scripts and styles come from this app, not a CDN: the machines that run it may have no
internet access.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from orchestrator.http.api import ENDPOINTS
from orchestrator.http.openapi import openapi_document
from orchestrator.http.routes import json_response

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Workflow Orchestrator API</title>
  <link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});
  </script>
</body>
</html>
"""


def docs_routes() -> list[BaseRoute]:
    """The document, the page and its static files."""
    document = json_response(openapi_document(ENDPOINTS)).body

    async def openapi_json(request: Request) -> Response:
        return Response(document, media_type="application/json")

    async def docs_page(request: Request) -> Response:
        return HTMLResponse(_PAGE)

    assets = Path(swagger_ui_bundle.swagger_ui_path)
    return [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs_page, methods=["GET"]),
        Mount("/docs/static", app=StaticFiles(directory=assets), name="docs-static"),
    ]
