"""bench/run.py: the table and the JSON from fake figures, and a small real run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from suite.figures import Figure, Reference, as_json, table, write_json

from tests.contract.conftest import postgres_test_url

RUN = Path(__file__).resolve().parents[2] / "bench" / "run.py"
KEYS = {"name", "value", "unit", "reference", "ratio"}

FAKE = [
    Figure(
        "e2e_workflows_per_s",
        360.0,
        "workflows/s",
        Reference("dbos_workflows_per_s", 72.0, "workflows/s", "DBOS 3.4.0"),
    ),
    Figure("post_p99_ms", 61.98, "ms"),
    Figure(
        "replay_events_per_s",
        80_000.0,
        "events/s",
        Reference("sqlite_scan_rows_per_s", 500_000.0, "rows/s", "raw scan"),
    ),
    Figure(
        "verify_events_per_s",
        50_000.0,
        "events/s",
        Reference("sqlite_scan_rows_per_s", 500_000.0, "rows/s", "raw scan"),
    ),
    Figure(
        "get_workflow_rps",
        9000.0,
        "requests/s",
        Reference("starlette_ceiling_rps", None, "requests/s", "wrk is not installed"),
    ),
    Figure("recovery_s", None, "s", note="failed: RuntimeError: boom"),
]


def test_json_lists_each_figure_with_its_reference_value_and_ratio() -> None:
    rows = {row["name"]: row for row in as_json(FAKE)["figures"]}
    assert rows["e2e_workflows_per_s"]["reference"] == 72.0
    assert rows["e2e_workflows_per_s"]["ratio"] == 5.0
    assert rows["e2e_workflows_per_s"]["reference_name"] == "dbos_workflows_per_s"
    assert rows["post_p99_ms"]["reference"] is None
    assert rows["post_p99_ms"]["ratio"] is None
    assert rows["replay_events_per_s"]["ratio"] == 0.16
    assert all(set(row) >= KEYS for row in rows.values())


def test_json_lists_each_reference_once_as_a_figure_of_its_own() -> None:
    names = [row["name"] for row in as_json(FAKE)["figures"]]
    assert names.count("sqlite_scan_rows_per_s") == 1
    assert "dbos_workflows_per_s" in names
    reference = next(r for r in as_json(FAKE)["figures"] if r["name"] == "dbos_workflows_per_s")
    assert reference == {
        "name": "dbos_workflows_per_s",
        "value": 72.0,
        "unit": "workflows/s",
        "reference": None,
        "ratio": None,
        "reference_name": None,
        "note": "DBOS 3.4.0",
    }


def test_an_unavailable_reference_has_null_value_and_ratio_and_says_why() -> None:
    rows = {row["name"]: row for row in as_json(FAKE)["figures"]}
    assert rows["get_workflow_rps"]["reference"] is None
    assert rows["get_workflow_rps"]["ratio"] is None
    assert rows["starlette_ceiling_rps"]["note"] == "wrk is not installed"
    assert rows["recovery_s"]["value"] is None


def test_write_json_writes_the_same_document(tmp_path: Path) -> None:
    path = tmp_path / "figures.json"
    write_json(FAKE, path)
    assert json.loads(path.read_text()) == as_json(FAKE)


def test_table_shows_values_references_ratios_and_numbered_notes() -> None:
    lines = table(FAKE).splitlines()
    assert lines[0].split() == ["figure", "value", "unit", "reference", "ref.", "value", "ratio"]
    assert lines[2].split() == [
        "e2e_workflows_per_s",
        "[1]",
        "360",
        "workflows/s",
        "dbos_workflows_per_s",
        "72.0",
        "5.00",
    ]
    assert lines[3].split() == ["post_p99_ms", "62.0", "ms", "-", "-", "-"]
    assert lines[4].split()[1:3] == ["[2]", "80,000"]
    assert lines[5].split()[1] == "[2]"  # the same reference note is listed once
    assert lines[6].split()[-2:] == ["-", "-"]
    assert lines[7].split()[:3] == ["recovery_s", "[4]", "-"]
    assert "[3] wrk is not installed" in lines
    assert "[4] failed: RuntimeError: boom" in lines


@pytest.mark.e2e
def test_run_measures_two_figures_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    command = [sys.executable, str(RUN), "--quick", "--scale", "0.05", "--json", str(out)]
    command += ["--only", "e2e_workflows_per_s,append_events_per_s"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "e2e_workflows_per_s" in done.stdout
    rows = {row["name"]: row for row in json.loads(out.read_text())["figures"]}
    assert {"e2e_workflows_per_s", "append_events_per_s"} <= set(rows)
    for name in ("e2e_workflows_per_s", "append_events_per_s"):
        assert set(rows[name]) >= KEYS
        assert rows[name]["value"] > 0
    append = rows["append_events_per_s"]
    assert append["reference_name"] == "sqlite_commit_events_per_s"
    assert append["reference"] > 0
    assert append["ratio"] == pytest.approx(append["value"] / append["reference"], rel=1e-3)
    # DBOS is the bench extra: without it the reference is null and its note says why.
    dbos = rows["dbos_workflows_per_s"]
    assert (dbos["value"] is not None and dbos["value"] > 0) or "not installed" in dbos["note"]


@pytest.mark.e2e
@pytest.mark.postgres
def test_the_postgresql_references_read_and_write_the_tables_as_the_store_does(
    tmp_path: Path,
) -> None:
    """On PostgreSQL the raw references write a row the table's checks accept (a compact row,
    as the store writes), and scan the table."""
    url = postgres_test_url()
    out = tmp_path / "figures.json"
    command = [sys.executable, str(RUN), "--quick", "--scale", "0.02", "--json", str(out)]
    command += ["--database-url", url, "--only", "append_events_per_s,verify_events_per_s"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {row["name"]: row for row in json.loads(out.read_text())["figures"]}
    append, verify = rows["append_events_per_s"], rows["verify_events_per_s"]
    assert append["reference_name"] == "postgres_commit_events_per_s"
    assert append["value"] > 0 and append["reference"] > 0, append
    assert verify["reference_name"] == "postgres_scan_rows_per_s"
    assert verify["value"] > 0 and verify["reference"] > 0, verify


def test_run_refuses_an_unknown_figure_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(RUN), "--only", "no_such_figure"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("bench/run.py: unknown figure(s)")
