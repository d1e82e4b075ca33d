"""The OpenAPI 3.1 document, generated from the endpoint table and its msgspec types."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec

from orchestrator import __version__
from orchestrator.http.dispatch import Endpoint
from orchestrator.http.errors import ErrorBody
from orchestrator.http.idempotency_key import COMMAND_METHODS
from orchestrator.http.idempotency_key import openapi_parameter as idempotency_parameter

_REF = "#/components/schemas/{name}"
_ERROR_TEXT = {
    401: "No API token, or not one of API_TOKEN's (only when the server has API_TOKEN set)",
    404: "Unknown id",
    409: "Not allowed in the current state",
    413: "Body over the limit",
    415: "Body not declared as JSON (Content-Type)",
    422: "Invalid body, query or path parameter, or Idempotency-Key (bad or already used)",
    429: "Too many steps or task runs wait for a thread (MAX_QUEUED_STEPS): try again after "
    "Retry-After seconds; nothing was recorded",
}


#: The bearer scheme Swagger UI's "Authorize" button fills in (declared when auth is on).
BEARER_SCHEME = "bearerAuth"
#: The operations answered without a token (see http/auth.py).
_PUBLIC_OPERATIONS = frozenset({"/health"})


def openapi_document(endpoints: Sequence[Endpoint], *, auth: bool = False) -> dict[str, Any]:
    """The whole document; every endpoint's body, query and response schema included.

    With `auth` (API_TOKEN set), every operation but /health requires the bearer token.
    """
    types: list[Any] = [ErrorBody]
    for endpoint in endpoints:
        types += [t for t in (endpoint.body, endpoint.query, endpoint.response) if t is not None]
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    schema_of = dict(zip(map(_type_key, types), schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        operation = _operation(endpoint, schema_of, components)
        if auth:
            _require_token(operation, public=endpoint.path in _PUBLIC_OPERATIONS)
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Workflow Orchestrator",
            "version": __version__,
            "description": "An event-sourced async workflow orchestrator.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }
    if auth:
        document["components"]["securitySchemes"] = {
            BEARER_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "description": "One of the tokens in the server's API_TOKEN setting.",
            }
        }
        document["security"] = [{BEARER_SCHEME: []}]
    return document


def _require_token(operation: dict[str, Any], *, public: bool) -> None:
    if public:
        operation["security"] = []  # overrides the document-wide requirement
        return
    operation["responses"]["401"] = {
        "description": _ERROR_TEXT[401],
        "content": {"application/json": {"schema": {"$ref": _REF.format(name="ErrorBody")}}},
    }


def _operation_id(endpoint: Endpoint) -> str:
    words = re.sub(r"[^a-z0-9]+", "_", endpoint.path.lower()).strip("_") or "root"
    return f"{endpoint.method.lower()}_{words}"


def _type_key(kind: Any) -> str:
    return repr(kind)


def _operation(
    endpoint: Endpoint, schema_of: dict[str, Any], components: dict[str, Any]
) -> dict[str, Any]:
    error = {"$ref": _REF.format(name="ErrorBody")}
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        }
        for name in endpoint.path_params
    ]
    if endpoint.query is not None:
        query_schema = components[endpoint.query.__name__]
        parameters += [
            {"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in query_schema["properties"].items()
        ]
    if endpoint.method in COMMAND_METHODS:
        parameters.append(idempotency_parameter())
    success: dict[str, Any] = {"description": endpoint.summary}
    if endpoint.response is not None:
        success["content"] = {
            "application/json": {"schema": schema_of[_type_key(endpoint.response)]}
        }
    elif endpoint.status != 204:
        success["content"] = {endpoint.media_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(endpoint.status): success}
    codes = set(endpoint.errors)
    if endpoint.body is not None:
        codes |= {413, 415, 422}
    if parameters:
        codes.add(422)
    for code in sorted(codes):
        responses[str(code)] = {
            "description": _ERROR_TEXT[code],
            "content": {"application/json": {"schema": error}},
        }
    operation: dict[str, Any] = {
        "operationId": _operation_id(endpoint),
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema_of[_type_key(endpoint.body)]}},
        }
    return operation
