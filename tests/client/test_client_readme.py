"""The README's "Python client" example runs as printed against a real server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ServerProcess

pytestmark = pytest.mark.e2e

README = Path(__file__).parents[2] / "README.md"


def readme_example() -> str:
    """The Python block of the README's "Python client" section."""
    section = README.read_text(encoding="utf-8").split("## Python client\n", 1)[1]
    found = re.search(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.DOTALL)
    assert found is not None, "the Python client section has no python block"
    return found.group(1)


def test_the_readme_example_prints_the_result_the_conflict_and_the_last_events(
    server: ServerProcess,
) -> None:
    program = readme_example().replace("http://127.0.0.1:8000", server.base_url)

    ran = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        "COMPLETE 285",
        "409 invalid_transition workflow 1 is COMPLETE; cannot next; allowed: edit, delete"
        " (it has finished)",
        "13 WorkflowTransitioned",
        "14 StepStarted",
        "15 StepSucceeded",
    ]
