"""Racing clients against a real server: one command wins, the others are told why."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
import pytest

from tests.e2e.conftest import StartServer, wait_for

pytestmark = pytest.mark.e2e

RACERS = 20


def test_twenty_racing_next_requests_advance_the_workflow_once(start_server: StartServer) -> None:
    # INIT's simulated work takes 0.5 s, so every racer arrives while the first one's step runs.
    server = start_server(TASK_TIME_SCALE="1")
    with server.client() as client:
        workflow_id = client.post(
            "/workflow/start", json={"name": "raced", "auto_start": False}
        ).json()["workflow_id"]
    start = threading.Barrier(RACERS)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def race() -> None:
        with httpx.Client(base_url=server.base_url, timeout=15) as own:
            start.wait()
            answer = own.post(f"/workflow/{workflow_id}/next")
        with lock:
            answers.append(answer)

    racers = [threading.Thread(target=race) for _ in range(RACERS)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(30)

    codes = Counter(answer.status_code for answer in answers)
    assert codes[200] == 1, codes
    assert codes[409] == RACERS - 1, codes
    [winner] = [answer.json() for answer in answers if answer.status_code == 200]
    assert winner["current_state"] == "PREPARE"
    assert {answer.json()["error"] for answer in answers if answer.status_code == 409} <= {
        "step_in_progress",
        "invalid_transition",
    }
    with server.client() as client:
        events = wait_for(
            lambda: client.get(f"/workflow/{workflow_id}/events").json(),
            lambda found: found[-1]["type"] == "WorkflowTransitioned",
            what="the step's transition",
        )
    types = Counter(event["type"] for event in events)
    assert (types["StepStarted"], types["StepSucceeded"], types["WorkflowTransitioned"]) == (
        1,
        1,
        1,
    )
