"""Crash loop: a real server is SIGKILLed at random moments while clients keep starting workflows.

Every logical workflow has one Idempotency-Key, and its client retries on any connection error
until it gets an answer. Afterwards (one more restart, everything settled) each acknowledged
workflow exists exactly once, ran to COMPLETE exactly once (four transitions, one StepSucceeded
per state, in its events), no retry created a second workflow, and `orchestrator verify`
passes. The kills land anywhere: between a commit and its answer too, which is the window the
key's row, committed with the command's events, closes.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from orchestrator.eventstore.sqlite_schema import stored_events
from tests.e2e.conftest import ServerProcess, StartServer, server_environment, wait_for

pytestmark = pytest.mark.e2e

KILLS = 20
CLIENTS = 4
#: Seconds the server runs between two kills: random within these bounds.
UPTIME = (0.05, 0.5)
SETTLE_DEADLINE = 60.0
STATES = ("INIT", "PREPARE", "EXECUTE", "VALIDATE", "COMPLETE")
FORWARD = [("INIT", "PREPARE"), ("PREPARE", "EXECUTE"), ("EXECUTE", "VALIDATE")]


@dataclass
class Tally:
    """What the clients saw, shared between their threads."""

    answers: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    #: Keys whose answer came back replayed after an attempt had failed on the wire: the
    #: command had been recorded before the connection dropped.
    recovered: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def start_until_answered(client: httpx.Client, number: int, tally: Tally) -> None:
    """Start logical workflow `number` under its own key, retrying until the server answers."""
    key = f"crash-loop-{number}"
    body = {"name": f"workflow {number}", "config": {"iterations": number % 100}}
    dropped = False
    while True:
        try:
            response = client.post("/workflow/start", json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError:  # killed mid-request, or not listening yet
            dropped = True
            with tally.lock:
                tally.retries += 1
            time.sleep(0.02)  # back-off before the retry; the kill loop bounds the downtime
            continue
        break
    with tally.lock:
        if response.status_code != 201:
            tally.errors.append(f"{key}: {response.status_code} {response.text}")
            return
        tally.answers[key] = response.json()["workflow_id"]
        if dropped and response.headers.get("Idempotent-Replayed") == "true":
            tally.recovered += 1


def run_clients(
    server: ServerProcess, numbers: itertools.count[int], stop: threading.Event, tally: Tally
) -> None:
    """One client thread: start workflow after workflow until `stop`, each one answered."""
    try:
        with httpx.Client(base_url=server.base_url, timeout=5.0) as client:
            while not stop.is_set():
                start_until_answered(client, next(numbers), tally)
    except Exception as exc:  # reported by the test, not lost in the thread
        with tally.lock:
            tally.errors.append(f"{type(exc).__name__}: {exc}")


def logged_workflows(
    server: ServerProcess,
) -> dict[int, list[tuple[str, dict[str, Any], dict[str, Any]]]]:
    """Each workflow stream's events as (type, payload, metadata), read from the file."""
    uri = f"file:{server.db_path}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        events = stored_events(conn)  # the file's rows, however compactly stored
    streams: dict[int, list[tuple[str, dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for event in events:
        if event.stream_id.startswith("workflow-"):
            streams[int(event.stream_id.split("-")[1])].append(
                (event.type, json.loads(event.data), event.metadata)
            )
    return streams


def check_ran_once(
    workflow_id: int, events: list[tuple[str, dict[str, Any], dict[str, Any]]]
) -> None:
    """Four transitions in order, one StepSucceeded per state, no failure."""
    moves = [(d["from_state"], d["to_state"]) for t, d, _ in events if t == "WorkflowTransitioned"]
    assert moves == [*FORWARD, ("VALIDATE", "COMPLETE")], (workflow_id, moves)
    succeeded = Counter(d["state"] for t, d, _ in events if t == "StepSucceeded")
    assert succeeded == Counter(STATES), (workflow_id, succeeded)
    assert not [t for t, _, _ in events if t == "StepFailed"], workflow_id


def test_keyed_starts_survive_a_crash_loop_exactly_once(start_server: StartServer) -> None:
    seed = int(os.environ.get("CRASH_LOOP_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    server = start_server()
    tally, stop, numbers = Tally(), threading.Event(), itertools.count(1)
    threads = [
        threading.Thread(target=run_clients, args=(server, numbers, stop, tally), daemon=True)
        for _ in range(CLIENTS)
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        for _ in range(KILLS):
            # The random uptime is the point of the test: kills must land anywhere.
            time.sleep(rng.uniform(*UPTIME))
            server.kill()
            server.start()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not [t for t in threads if t.is_alive()], "a client never got its answer"
    assert tally.errors == [], tally.errors

    server.restart()  # once more, then let every resumed workflow finish
    expected = len(tally.answers)
    with server.client() as client:
        wait_for(
            lambda: client.get("/execution/stats").json()["workflows"],
            # At least as many as were acknowledged: a duplicate is reported below, by key.
            lambda counts: counts["complete"] == counts["total"] >= expected,
            what=f"all {expected} acknowledged workflows to complete",
            timeout=SETTLE_DEADLINE,
        )
    server.stop()

    streams = logged_workflows(server)
    started = [
        (meta.get("idempotency_key"), workflow_id)
        for workflow_id, events in streams.items()
        for type_, _, meta in events
        if type_ == "WorkflowStarted"
    ]
    twice = {key: n for key, n in Counter(key for key, _ in started).items() if n > 1}
    assert twice == {}, f"retries created second workflows under these keys: {twice}"
    assert len(streams) == len(started) == expected
    assert dict(started) == tally.answers
    for workflow_id, events in streams.items():
        check_ran_once(workflow_id, events)
    verified = subprocess.run(
        [sys.executable, "-m", "orchestrator", "verify"],
        cwd=server.workdir,
        env=server_environment(server.settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    print(
        f"\ncrash loop (seed {seed}): {KILLS} kills survived in {time.monotonic() - began:.1f} s; "
        f"{expected} workflows, each COMPLETE once; {tally.retries} retries, "
        f"{tally.recovered} answered from a key recorded before the connection dropped; "
        f"verify: {[line for line in verified.stdout.splitlines() if 'intact' in line]}"
    )
