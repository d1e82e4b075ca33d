"""asyncpg is the `postgres` extra: a plain install (the README's Quick start) serves SQLite
without it, and a PostgreSQL DATABASE_URL without it is refused in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.settings import SettingsError, parse_database

WITHOUT_ASYNCPG = """
import importlib.abc, sys
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "asyncpg" or name.startswith("asyncpg."):
            raise ModuleNotFoundError("No module named 'asyncpg'")
        return None
sys.meta_path.insert(0, Blocker())
from orchestrator.cli import main
import orchestrator.cli_parts  # a part of a SQLite verify or rebuild
from orchestrator.http.app import create_app
from orchestrator.settings import Settings
create_app(Settings(database_url="sqlite:///{path}", log_file=""))
print("asyncpg" in sys.modules)
"""


def test_the_sqlite_server_is_built_without_the_postgresql_driver(tmp_path: Path) -> None:
    ran = subprocess.run(
        [sys.executable, "-c", WITHOUT_ASYNCPG.format(path=tmp_path / "wf.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "False"


def test_a_postgresql_url_without_the_driver_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)

    with pytest.raises(SettingsError) as refused:
        parse_database("postgresql://orch@db:5432/orch")

    assert str(refused.value) == (
        "DATABASE_URL names a PostgreSQL database, but its driver is not installed: "
        "pip install -e '.[postgres]' (or pip install asyncpg)"
    )
