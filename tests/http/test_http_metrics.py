"""GET /metrics: Prometheus's text format, parsed with the client library's own parser, with
numbers that follow what the service did."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from tests.waiting import wait_for


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_follow_workflows_steps_requests_and_the_log(
    client: TestClient, start: Callable[[dict[str, Any]], int]
) -> None:
    for index in range(3):
        start({"name": f"w{index}"})
    manual = start({"name": "manual", "auto_start": False})
    client.get("/workflow/999")  # a 404

    samples = wait_for(
        lambda: scrape(client),
        lambda s: value(s, "orchestrator_workflows", state="COMPLETE") == 3,
        what="three COMPLETE workflows in /metrics",
    )

    assert value(samples, "orchestrator_workflows", state="INIT") == 1
    assert value(samples, "orchestrator_transitions_total", trigger="complete") == 3
    assert value(samples, "orchestrator_transitions_total", trigger="prepare") == 3
    assert (
        value(
            samples,
            "orchestrator_step_duration_seconds_count",
            state="EXECUTE",
            outcome="succeeded",
        )
        == 3
    )
    # 3 x (started + 5 steps x 2 + 4 transitions... ) as the log has them, plus the manual one.
    assert value(samples, "orchestrator_events_appended_total", kind="workflow") == value(
        samples, "orchestrator_log_head_position"
    )
    assert (
        value(
            samples,
            "orchestrator_http_requests_total",
            method="POST",
            route="/workflow/start",
            status="201",
        )
        == 4
    )
    assert (
        value(
            samples,
            "orchestrator_http_requests_total",
            method="GET",
            route="/workflow/{workflow_id}",
            status="404",
        )
        == 1
    )
    assert value(samples, "orchestrator_projection_lag_events") == 0
    # Each append was one commit (memory); the histograms count every one.
    commits = value(samples, "orchestrator_append_batch_size_count")
    assert commits >= 4 * 2  # at least a start and a step per workflow
    assert value(samples, "orchestrator_append_commit_seconds_count") == commits
    assert value(samples, "orchestrator_worker_pool_threads", pool="steps") >= 1
    assert value(samples, "orchestrator_worker_pool_busy", pool="steps") == 0
    assert manual == 4


def test_failed_steps_are_counted_by_state_and_outcome(
    client: TestClient, start: Callable[[dict[str, Any]], int]
) -> None:
    start({"name": "fails", "config": {"simulate_failure": True}})

    samples = wait_for(
        lambda: scrape(client),
        lambda s: value(s, "orchestrator_workflows", state="FAILED") == 1,
        what="a FAILED workflow in /metrics",
    )

    assert (
        value(samples, "orchestrator_step_duration_seconds_count", state="INIT", outcome="failed")
        == 1
    )
    assert value(samples, "orchestrator_transitions_total", trigger="fail") == 1
