"""GET /openapi.json, GET /docs (Swagger UI 5) and GET /redoc (ReDoc 2), served offline.

The viewers' scripts and styles are vendored under `static/` (see its README for versions and
origin) and served by this app, not a CDN: the machines that run it may have no internet access.
Swagger UI 5 is the first major version that renders OpenAPI 3.1, the version of our document.
Neither page links web fonts or any other remote resource, and the ReDoc bundle is changed so
that it does not fetch its logo from Redocly's CDN (static/README.md); tests/browser checks both
pages in Chromium.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from orchestrator.engine.tasks import TaskRegistry
from orchestrator.http.endpoint_table import ENDPOINTS
from orchestrator.http.openapi import openapi_document
from orchestrator.http.openapi_tasks import document_tasks
from orchestrator.http.responses import json_response

_TITLE = "Workflow Orchestrator API"

# validatorUrl: null, so that no layout ever shows Swagger UI's online-validator badge, which sends
# the document's URL to swagger.io whenever the page is not served from localhost.
_SWAGGER_UI_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{_TITLE}</title>
  <link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "/openapi.json", dom_id: "#swagger-ui", validatorUrl: null
    }});
  </script>
</body>
</html>
"""

# Unlike FastAPI's ReDoc page, no Google Fonts link: ReDoc falls back to the system's fonts.
_REDOC_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{_TITLE} - ReDoc</title>
  <link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png">
  <style>body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
  <div id="redoc"></div>
  <script src="/redoc/static/redoc.standalone.js"></script>
  <script>
    Redoc.init("/openapi.json", {{}}, document.getElementById("redoc"));
  </script>
</body>
</html>
"""


def docs_routes(
    *,
    auth: bool = False,
    registry: TaskRegistry | None = None,
    type_names: list[str] | None = None,
) -> list[BaseRoute]:
    """The document, the two pages and their static files; `auth`: the API needs a token.

    With `auth`, the document declares the bearer scheme, which gives Swagger UI its
    "Authorize" button; the pages and the document stay public (see http/auth.py for why).
    The document lists the task types of `type_names` and the config schemas the tasks of
    `registry` declare.
    """
    whole = openapi_document(ENDPOINTS, auth=auth)
    if registry is not None:
        whole = document_tasks(whole, registry, type_names or [])
    document = json_response(whole).body

    async def openapi_json(request: Request) -> Response:
        return Response(document, media_type="application/json")

    async def swagger_ui_page(request: Request) -> Response:
        return HTMLResponse(_SWAGGER_UI_PAGE)

    async def redoc_page(request: Request) -> Response:
        return HTMLResponse(_REDOC_PAGE)

    return [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", swagger_ui_page, methods=["GET"]),
        Mount(
            "/docs/static",
            app=StaticFiles(packages=[("orchestrator.http", "static/swagger-ui")]),
            name="docs-static",
        ),
        Route("/redoc", redoc_page, methods=["GET"]),
        Mount(
            "/redoc/static",
            app=StaticFiles(packages=[("orchestrator.http", "static/redoc")]),
            name="redoc-static",
        ),
    ]
