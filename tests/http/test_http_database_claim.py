"""An app made by `create_app` claims its SQLite file for its lifespan, as `serve` does: a
second one on the same file (mounted in another application, say) refuses to start."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from orchestrator.http.app import create_app
from orchestrator.serving import DatabaseLock, ServeRefused
from orchestrator.settings import Settings
from tests.settings_for_tests import TESTCLIENT_HOSTS


def on_file(path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{path}",
        task_time_scale=0,
        log_file="",
        allowed_hosts=TESTCLIENT_HOSTS,
    )


def test_a_second_app_on_the_same_file_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    with TestClient(create_app(on_file(path))) as first:
        assert first.post("/workflow/start", json={"name": "w"}).status_code == 201

        second = TestClient(create_app(on_file(path)))
        with pytest.raises(ServeRefused, match=f"already serving {path}"), second:
            pass

        assert first.get("/workflow/1").status_code == 200  # the first one runs on

    with TestClient(create_app(on_file(path))) as later:  # released at the first one's end
        assert later.get("/workflow/1").json()["name"] == "w"


def test_an_app_refuses_a_file_another_process_part_has_locked(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    lock = DatabaseLock(path)
    lock.acquire()
    try:
        client = TestClient(create_app(on_file(path)))
        with pytest.raises(ServeRefused, match="one server per SQLite file"), client:
            pass
    finally:
        lock.release()


def test_serve_builds_its_app_without_a_second_claim(tmp_path: Path) -> None:
    path = tmp_path / "wf.db"
    lock = DatabaseLock(path)  # what serve takes before it builds the app
    lock.acquire()
    try:
        with TestClient(create_app(on_file(path), claim_database=False)) as client:
            assert client.get("/health").status_code == 200
    finally:
        lock.release()
