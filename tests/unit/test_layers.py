"""The layering of ARCHITECTURE.md, checked on the source: imports only flow downward."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).parents[2] / "src" / "orchestrator"

#: Leaves any layer may use: they import nothing of the project but other leaves.
LEAVES = {"settings", "logfile", "sized_cache"}

#: What each layer may import besides itself and the leaves.
ALLOWED = {
    "domain": set(),
    "eventstore": set(),
    "projections": {"domain", "eventstore"},
    "engine": {"domain", "eventstore"},
    "history": {"domain", "eventstore", "projections"},
}


def imported_layers(package: str) -> dict[str, set[str]]:
    """For each module of `package`, the top-level project names it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted((SOURCE / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module
            elif isinstance(node, ast.Import):
                module = node.names[0].name
            else:
                continue
            parts = module.split(".")
            if parts[0] == "orchestrator" and len(parts) > 1:
                names.add(parts[1])
        found[str(path.relative_to(SOURCE))] = names
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer: str) -> None:
    allowed = ALLOWED[layer] | LEAVES | {layer}

    wrong = {
        module: sorted(names - allowed)
        for module, names in imported_layers(layer).items()
        if names - allowed
    }

    assert wrong == {}


def test_the_leaves_import_only_other_leaves() -> None:
    for leaf in LEAVES:
        tree = ast.parse((SOURCE / f"{leaf}.py").read_text(encoding="utf-8"))
        modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        project = {m.split(".")[1] for m in modules if m and m.startswith("orchestrator.")}
        assert project <= LEAVES, leaf


def test_nothing_below_the_app_imports_http() -> None:
    for layer in ALLOWED:
        users = [module for module, names in imported_layers(layer).items() if "http" in names]
        assert users == [], layer
