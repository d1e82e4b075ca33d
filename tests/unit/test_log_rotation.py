"""The log file rotates at LOG_MAX_BYTES and keeps LOG_BACKUPS old files."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import configure_logging
from orchestrator.settings import Settings


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger back as it was (configure_logging replaces its handlers)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def write_lines(count: int) -> None:
    """`count` log lines of about 100 bytes each."""
    log = logging.getLogger("orchestrator.test_rotation")
    for number in range(count):
        log.warning("line %04d %s", number, "x" * 50)


@pytest.mark.usefixtures("restore_logging")
def test_the_log_file_rotates_at_log_max_bytes_keeping_log_backups_files(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator.log"
    configure_logging(Settings(log_file=str(path), log_max_bytes=2000, log_backups=2))

    write_lines(200)

    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["orchestrator.log", "orchestrator.log.1", "orchestrator.log.2"]
    assert all((tmp_path / name).stat().st_size <= 2000 for name in files)
    assert "line 0199" in path.read_text(encoding="utf-8")
    assert "line 0000" not in "".join((tmp_path / n).read_text(encoding="utf-8") for n in files)


@pytest.mark.usefixtures("restore_logging")
def test_with_no_backups_the_log_file_starts_over_instead_of_growing(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator.log"
    configure_logging(Settings(log_file=str(path), log_max_bytes=2000, log_backups=0))

    write_lines(200)

    assert [p.name for p in tmp_path.iterdir()] == ["orchestrator.log"]
    assert path.stat().st_size <= 2000
    assert "line 0199" in path.read_text(encoding="utf-8")
