"""`orchestrator serve` and its secrets, through the real entry point: where it refuses to
listen, the modes of the files it creates, and what it never prints or logs."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import RunServe, StartServer, server_environment, wait_for

pytestmark = pytest.mark.e2e

TOKEN = "e2e-token-0123456789abcdef"
OTHER_SECRET = "somebody-elses-token-zyxwvu"
INTEGRITY_KEY = "e2e-integrity-key-0123456789"


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The usual umask (022), so a file is private only if the server makes it so."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


# Where it listens ----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_non_loopback_address_without_a_token_is_refused_before_anything_starts(
    run_serve: RunServe, tmp_path: Path, host: str
) -> None:
    finished = run_serve(API_HOST=host)

    assert finished.returncode == 2, finished.stdout + finished.stderr
    assert finished.stderr.splitlines() == [
        f"orchestrator: refusing to serve {host} without API_TOKEN: it is not a loopback "
        "address, so anyone who can reach it could run, cancel and delete workflows; set "
        "API_TOKEN (clients then send 'Authorization: Bearer <token>'), or "
        "ALLOW_INSECURE_REMOTE=true if the network in front of it is trusted"
    ]
    assert not (tmp_path / "wf.db").exists()  # refused before the database was touched
    assert not (tmp_path / "orchestrator.log").exists()


def test_a_non_loopback_address_with_a_token_serves_and_asks_for_it(
    start_server: StartServer,
) -> None:
    server = start_server(API_HOST="0.0.0.0", API_TOKEN=TOKEN)
    with server.client() as client:
        assert client.get("/health").status_code == 200
        assert client.get("/workflows").status_code == 401
        authorized = {"Authorization": f"Bearer {TOKEN}"}
        assert client.get("/workflows", headers=authorized).json() == []


def test_allow_insecure_remote_serves_without_a_token_and_warns(
    start_server: StartServer,
) -> None:
    server = start_server(API_HOST="0.0.0.0", ALLOW_INSECURE_REMOTE="true")
    with server.client() as client:
        assert client.get("/workflows").json() == []

    assert (
        "WARNING orchestrator.cli: serving 0.0.0.0 without API_TOKEN "
        "(ALLOW_INSECURE_REMOTE=true): anyone who can reach it can run, cancel and delete "
        "workflows"
    ) in server.output()


# File modes ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("permissive_umask")
def test_the_database_its_wal_and_shm_and_the_log_are_created_0600(
    start_server: StartServer,
) -> None:
    server = start_server()
    with server.client() as client:
        assert client.post("/workflow/start", json={"name": "on disk"}).status_code == 201
    wal = server.db_path.with_name(server.db_path.name + "-wal")
    shm = server.db_path.with_name(server.db_path.name + "-shm")
    wait_for(lambda: wal.exists() and shm.exists(), bool, what="the -wal and -shm files")

    for path in (server.db_path, wal, shm, server.log_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (
            f"{path.name}: {oct(path.stat().st_mode)}"
        )


# Secrets -------------------------------------------------------------------------------------


def test_a_bad_database_url_is_never_echoed_with_its_password(run_serve: RunServe) -> None:
    finished = run_serve(DATABASE_URL="mysql://orchestrator:hunter2-secret@db.example/wf")

    assert finished.returncode == 2
    assert finished.stderr.strip() == (
        "orchestrator: bad setting: DATABASE_URL must look like sqlite:///./workflow.db, "
        "postgresql://user@host:5432/db or memory://, got 'mysql://orchestrator:***@db.example/wf'"
    )


def test_a_bad_token_setting_is_refused_without_showing_any_token(run_serve: RunServe) -> None:
    finished = run_serve(API_TOKEN=f"short-secret,{TOKEN}")

    assert finished.returncode == 2
    assert "short-secret" not in finished.stderr and TOKEN not in finished.stderr
    assert "(the values are not shown)" in finished.stderr


def test_tokens_and_keys_appear_in_no_log_line(start_server: StartServer) -> None:
    server = start_server(
        API_TOKEN=TOKEN, INTEGRITY_KEY=INTEGRITY_KEY, ACCESS_LOG="true", LOG_LEVEL="DEBUG"
    )
    with server.client() as client:
        authorized = {"Authorization": f"Bearer {TOKEN}"}
        started = client.post("/workflow/start", json={"name": "logged"}, headers=authorized)
        assert started.status_code == 201
        assert (
            client.get(
                "/workflows", headers={"Authorization": f"Bearer {OTHER_SECRET}"}
            ).status_code
            == 401
        )
        assert client.post("/workflow/start", content=b"{", headers=authorized).status_code == 422
    wait_for(
        server.output,
        lambda text: '"GET /workflows HTTP/1.1" 401' in text and "INIT -> PREPARE" in text,
        what="the access log and the engine's log",
    )
    server.stop()

    logged = server.output() + server.log_path.read_text(encoding="utf-8")
    assert f"with sqlite:///{server.db_path}" in logged  # the start-up line names the database
    for secret in (TOKEN, OTHER_SECRET, INTEGRITY_KEY):
        assert secret not in logged


def test_the_demo_sends_the_token_of_its_own_settings(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(API_TOKEN=TOKEN)
    demo = [sys.executable, "-m", "orchestrator", "demo", "--url", server.base_url]
    finished = subprocess.run(
        [*demo, "--interactive"],
        input="5\nq\n",  # the stats scene, then quit
        cwd=tmp_path,
        env=server_environment({"API_TOKEN": TOKEN}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "worker pool: 0 active of 5, 0 queued" in finished.stdout, finished.stdout
