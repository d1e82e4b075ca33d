"""Two real `orchestrator serve` processes on one PostgreSQL database, as behind a load balancer:
workflows started on both complete exactly once with unique ids, a write on one is read on the
other within a second, the live feed of one carries the other's events, /health shows both, and
when one is SIGKILLed mid-step the other takes its workflows over after LEASE_SECONDS and
completes each one, with no step recorded twice."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.contract.conftest import _drop_test_schemas as _drop_test_schemas
from tests.contract.conftest import postgres_url
from tests.e2e.conftest import ServerProcess, free_port, run_on

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

#: Seconds a dead server's leases last: the survivor takes over after this.
LEASE_SECONDS = 2.0
#: Built-in steps take about half a second each at this scale: a workflow is mid-step for ~2 s.
TIME_SCALE = "0.5"
DEADLINE = 60.0
STATES = ("INIT", "PREPARE", "EXECUTE", "VALIDATE", "COMPLETE")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    url = postgres_url(tmp_path)
    settings = {
        "DATABASE_URL": url,
        "TASK_TIME_SCALE": TIME_SCALE,
        "LEASE_SECONDS": str(LEASE_SECONDS),
    }
    pair = []
    for name in ("a", "b"):
        workdir = tmp_path / name
        workdir.mkdir()
        pair.append(ServerProcess(workdir=workdir, port=free_port(), overrides=settings))
    try:
        for server in pair:
            server.start()
        yield pair[0], pair[1]
    finally:
        for server in pair:
            server.stop()


def start(client: httpx.Client, name: str) -> int:
    response = client.post("/workflow/start", json={"name": name})
    assert response.status_code == 201, response.text
    workflow_id: int = response.json()["workflow_id"]
    return workflow_id


def scrape_gauges(client: httpx.Client) -> dict[str, float]:
    """The unlabelled samples of GET /metrics, parsed by the Prometheus client's parser."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if not sample.labels
    }


def events_of(client: httpx.Client, workflow_id: int) -> list[dict[str, Any]]:
    response = client.get(f"/workflow/{workflow_id}/events")
    assert response.status_code == 200, response.text
    body = response.json()
    events: list[dict[str, Any]] = body["events"] if isinstance(body, dict) else body
    return events


def wait_until(check: Any, *, what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout:g} s (last: {last!r})")


def test_two_servers_share_the_work_and_survive_a_sigkill(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = servers
    with a.client() as on_a, b.client() as on_b:
        # Both report the cluster; exactly one writes the read models.
        health = [on_a.get("/health").json(), on_b.get("/health").json()]
        assert all(h["cluster"]["processes"] == 2 for h in health), health
        assert [h["cluster"]["projection_writer"] for h in health].count(True) == 1

        ids_a = [start(on_a, f"a{i}") for i in range(15)]
        ids_b = [start(on_b, f"b{i}") for i in range(15)]
        assert len(set(ids_a + ids_b)) == 30, "ids are unique across the two servers"
        # Each drives its own under leases, as /metrics says; one writes the read models.
        gauges = [scrape_gauges(client) for client in (on_a, on_b)]
        assert sum(g["orchestrator_projection_writer"] for g in gauges) == 1
        assert all(g["orchestrator_leases_held"] >= 1 for g in gauges), gauges

        # Some of b's workflows are mid-step now: SIGKILL it.
        wait_until(
            lambda: sum(
                on_a.get(f"/workflow/{i}").json()["current_state"] not in ("INIT", "COMPLETE")
                for i in ids_b[:3]
            ),
            what="b's workflows under way",
        )
        killed_at = time.monotonic()
        b.kill()

        def all_complete() -> bool:
            # COMPLETE and its finalize step recorded (it runs on entering COMPLETE).
            return all(
                any(
                    e["type"] == "StepSucceeded" and e["data"].get("state") == "COMPLETE"
                    for e in events_of(on_a, i)
                )
                for i in ids_a + ids_b
            )

        wait_until(all_complete, what="every workflow COMPLETE on the survivor")
        took = time.monotonic() - killed_at
        print(f"\nfrom SIGKILL to all of the dead server's workflows complete: {took:.2f} s")
        assert took >= LEASE_SECONDS * 0.5, "taken over only once the dead one's leases expired"

        for workflow_id in ids_a + ids_b:
            events = events_of(on_a, workflow_id)
            outcomes = Counter(
                (e["type"], e["data"].get("state"))
                for e in events
                if e["type"] in ("StepSucceeded", "StepFailed")
            )
            assert outcomes == Counter(("StepSucceeded", s) for s in STATES), (
                workflow_id,
                outcomes,
            )
            transitions = [
                (e["data"]["from_state"], e["data"]["to_state"])
                for e in events
                if e["type"] == "WorkflowTransitioned"
            ]
            assert len(transitions) == len(set(transitions)) == 4, (workflow_id, transitions)

        health_a = on_a.get("/health").json()
        assert health_a["cluster"]["projection_writer"] is True, "the survivor writes now"
        assert health_a["projection_lag"] == 0, "the survivor applied the whole log"


def test_a_write_on_one_server_is_read_and_streamed_on_the_other(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = servers
    with a.client() as on_a, b.client() as on_b:
        head = on_b.get("/health").json()["log_position"]
        with on_b.stream(
            "GET", "/events/stream", headers={"Last-Event-ID": str(head)}, timeout=DEADLINE
        ) as feed:
            workflow_id = start(on_a, "written on a")
            written = time.monotonic()
            # Read on the other server within a second.
            seen = wait_until(
                lambda: on_b.get(f"/workflow/{workflow_id}").status_code == 200,
                what="the workflow on b",
                timeout=1.0,
            )
            assert seen
            print(f"\nread on the other server after {time.monotonic() - written:.3f} s")
            # And b's live feed carries a's events.
            for line in feed.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    if event.get("stream_id") == f"workflow-{workflow_id}":
                        break
            # The issuing client sees its own write at once on its server.
            created = on_b.post("/workflow/start", json={"name": "on b"}).json()
            assert on_b.get(f"/workflow/{created['workflow_id']}").json()["name"] == "on b"


def test_the_history_tools_work_beside_two_running_servers(
    servers: tuple[ServerProcess, ServerProcess], tmp_path: Path
) -> None:
    a, b = servers
    url = a.settings["DATABASE_URL"]
    with a.client() as on_a, b.client() as on_b:
        ids = [start(on_a, "tooled a"), start(on_b, "tooled b")]

        def done() -> bool:
            return all(
                on_a.get(f"/workflow/{i}").json()["current_state"] == "COMPLETE" for i in ids
            )

        wait_until(done, what="both workflows COMPLETE")

        replayed = run_on(url, tmp_path, "replay", str(ids[1]), "--json")
        assert replayed.returncode == 0, replayed.stderr
        assert json.loads(replayed.stdout)["state"]["current_state"] == "COMPLETE"

        verified = run_on(url, tmp_path, "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr

        checked = run_on(url, tmp_path, "rebuild-projections", "--check")
        assert checked.returncode == 0, checked.stdout + checked.stderr

        rebuilt = run_on(url, tmp_path, "rebuild-projections")
        assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
        # Both servers go on from the swapped-in tables: a new workflow completes and is
        # counted once on each.
        third = start(on_b, "after the rebuild")

        def counted() -> bool:
            return (
                all(
                    c.get("/execution/stats").json()["workflows"]["complete"] == 3
                    for c in (on_a, on_b)
                )
                and on_a.get(f"/workflow/{third}").json()["current_state"] == "COMPLETE"
            )

        wait_until(counted, what="three COMPLETE on both servers")


def test_a_server_restarted_after_a_crash_resumes_its_work_without_waiting_for_leases(
    tmp_path: Path,
) -> None:
    # Leases far longer than the test: only knowing that the old process is gone (same host,
    # its pid dead) lets the restarted server resume at once.
    settings = {
        "DATABASE_URL": postgres_url(tmp_path),
        "TASK_TIME_SCALE": TIME_SCALE,
        "LEASE_SECONDS": "120",
    }
    server = ServerProcess(workdir=tmp_path, port=free_port(), overrides=settings)
    server.start()
    try:
        with server.client() as client:
            ids = [start(client, f"crashed {i}") for i in range(5)]
            wait_until(
                lambda: all(
                    client.get(f"/workflow/{i}").json()["current_state"] != "INIT" for i in ids
                ),
                what="every workflow under way",
            )
        server.restart()  # SIGKILL, then a new process on the same database
        restarted = time.monotonic()
        with server.client() as client:
            wait_until(
                lambda: all(
                    client.get(f"/workflow/{i}").json()["current_state"] == "COMPLETE" for i in ids
                ),
                what="every workflow COMPLETE after the restart",
                timeout=60,
            )
            assert time.monotonic() - restarted < 60
            health = client.get("/health").json()
            assert health["cluster"]["processes"] == 1, "the dead process was forgotten"
    finally:
        server.stop()
