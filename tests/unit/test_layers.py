"""The layering of ARCHITECTURE.md, checked on the source: imports only flow downward."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).parents[2] / "src" / "orchestrator"

#: Leaves any layer may use: they import nothing of the project but other leaves.
LEAVES = {"settings", "logfile", "sized_cache", "progress", "part_processes", "stopping"}

#: What each layer may import besides itself and the leaves.
ALLOWED = {
    "domain": set(),
    "eventstore": set(),
    "projections": {"domain", "eventstore"},
    "engine": {"domain", "eventstore"},
    "history": {"domain", "eventstore", "projections"},
    # The Python client runs in users' programs: it knows the API, not the server.
    "client": set(),
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


#: The modules of each concrete backend, by backend.
CONCRETE = {
    "sqlite": {
        "eventstore/sqlite.py",
        "eventstore/sqlite_anchors.py",
        "eventstore/sqlite_codec.py",
        "eventstore/sqlite_guard.py",
        "eventstore/sqlite_keys.py",
        "eventstore/sqlite_parts.py",
        "eventstore/sqlite_schema.py",
        "projections/sqlite.py",
        "projections/sqlite_tables.py",
    },
    "memory": {"eventstore/memory.py", "projections/memory_tables.py"},
    "postgres": {
        "eventstore/postgres.py",
        "eventstore/postgres_anchors.py",
        "eventstore/postgres_codec.py",
        "eventstore/postgres_connection.py",
        "eventstore/postgres_dictionary.py",
        "eventstore/postgres_head.py",
        "eventstore/postgres_keys.py",
        "eventstore/postgres_leases.py",
        "eventstore/postgres_parts.py",
        "eventstore/postgres_pool.py",
        "eventstore/postgres_schema.py",
        "eventstore/postgres_statistics.py",
        "projections/postgres.py",
        "projections/postgres_leadership.py",
        "projections/postgres_tables.py",
    },
}
#: Where a backend is chosen (`backend.py`), what `serve` and an embedded Orchestrator check
#: of a SQLite file before they open one (the file lock, a write-ahead log left without its
#: database, the original's schema), and the entry point of a part of a verify (of a SQLite or
#: PostgreSQL log) or a rebuild (`cli_parts.py`): the only modules outside a backend that may
#: import one.
CHOOSERS = {"backend.py", "startup.py", "cli.py", "cli_parts.py"}
#: `import-original` reads the original's own SQLite file (whatever our backend is), and names
#: its tables from the list `serve` uses to refuse that file as a log of ours.
FOREIGN_FILES = {("history/original_rows.py", "orchestrator.eventstore.sqlite_schema")}


def _module_path(module: str) -> str:
    return module.removeprefix("orchestrator.").replace(".", "/") + ".py"


@pytest.mark.parametrize("name", sorted(CONCRETE))
def test_a_concrete_backend_is_imported_only_by_itself_and_the_factory(name: str) -> None:
    mine = CONCRETE[name]
    users: dict[str, list[str]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        where = str(path.relative_to(SOURCE))
        if where in mine or where in CHOOSERS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            if _module_path(node.module) in mine and (where, node.module) not in FOREIGN_FILES:
                users.setdefault(where, []).append(node.module)

    assert users == {}
