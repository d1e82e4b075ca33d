"""What /openapi.json says about one server's tasks: the task types it takes, and the config
schemas its tasks declare (a msgspec Struct given as `config=` to `@step` or `@task_type`).

A workflow's config goes to every step, so it must satisfy each step's schema: `allOf`. A
task's config depends on its type: one `if`/`then` per type with a schema.
"""

from __future__ import annotations

from typing import Any

import msgspec

from orchestrator.engine.task_specs import TaskSpec
from orchestrator.engine.tasks import TaskRegistry

_REF = "#/components/schemas/{name}"
#: The request bodies that carry a workflow's config.
_WORKFLOW_BODIES = ("StartWorkflowRequest", "CreateWorkflowRequest", "UpdateWorkflowRequest")


def document_tasks(
    document: dict[str, Any], registry: TaskRegistry, type_names: list[str]
) -> dict[str, Any]:
    """`document` with this server's task types and config schemas filled in (in place)."""
    schemas: dict[str, Any] = document["components"]["schemas"]
    task_body = schemas.get("CreateTaskRequest")
    if task_body is not None:
        task_body["properties"]["task_type"]["enum"] = type_names
    steps = [spec for spec in registry.steps().values() if spec.config_type is not None]
    types = [spec for name in registry.type_names() if (spec := registry.task_type(name))]
    typed = [spec for spec in types if spec.config_type is not None]
    refs = _add_config_schemas(schemas, [*steps, *typed])
    if steps:
        for body in _WORKFLOW_BODIES:
            config = schemas.get(body, {}).get("properties", {}).get("config")
            if config is not None:
                config["allOf"] = [{"$ref": refs[spec.name]} for spec in steps]
                config["description"] = (
                    f"{config.get('description', '')}; each step's task takes it as its "
                    "declared config: " + ", ".join(f"{s.name} ({refs[s.name]})" for s in steps)
                ).lstrip("; ")
    if typed and task_body is not None:
        task_body["allOf"] = [
            {
                "if": {"properties": {"task_type": {"const": spec.name}}},
                "then": {"properties": {"config": {"$ref": refs[spec.name]}}},
            }
            for spec in typed
        ]
    return document


def _add_config_schemas(schemas: dict[str, Any], specs: list[TaskSpec]) -> dict[str, str]:
    """Each spec's config schema added to `schemas`; the reference to it, by task name."""
    if not specs:
        return {}
    configs = [spec.config_type for spec in specs]
    found, components = msgspec.json.schema_components(configs, ref_template=_REF)
    for name, schema in components.items():
        schemas.setdefault(name, schema)
    return {spec.name: schema["$ref"] for spec, schema in zip(specs, found, strict=True)}
