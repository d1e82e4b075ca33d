"""`python examples/report_pipeline/run.py`, exactly as its README says to run it: a real
document server, a real `orchestrator serve --tasks pipeline_tasks`, real workflows. Checks its
exit status, what it prints, the reports it leaves, and that it stops both servers."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import server_environment

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RUN = Path("examples", "report_pipeline", "run.py")
#: A whole run takes about 2 s; this bounds a hung one.
RUN_DEADLINE = 60.0

SUMMARY_ROW = re.compile(r"^ +(\d+)  (\w+) +(\d+|-)  (attempt \d|-) +(\S+)$", re.MULTILINE)
URLS = re.compile(r"^Document server  (http://127\.0\.0\.1:\d+)/docs/\nOrchestrator +(\S+)", re.M)


def run_example(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the example to its end from the repository root, its outputs in `out`."""
    return subprocess.run(
        [sys.executable, str(RUN), "--out", str(out), *args],
        cwd=ROOT,
        env=server_environment({}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_DEADLINE,
        check=False,
    )


def urls_in(output: str) -> tuple[str, str]:
    """The document server's and the orchestrator's URLs, as the run printed them."""
    found = URLS.search(output)
    assert found is not None, output
    return found.group(1), found.group(2)


def is_listening(url: str) -> bool:
    """Whether anything accepts connections at the URL's port."""
    port = int(url.rsplit(":", 1)[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_example_reports_on_three_documents_and_stops_both_servers(tmp_path: Path) -> None:
    done = run_example(tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    documents, orchestrator = urls_in(done.stdout)
    reports = tmp_path / "reports"
    assert SUMMARY_ROW.findall(done.stdout) == [
        ("1", "COMPLETE", "54", "attempt 1", str(reports / "report-1.md")),
        ("2", "COMPLETE", "30", "attempt 1", str(reports / "report-2.md")),
        ("3", "COMPLETE", "31", "attempt 2", str(reports / "report-3.md")),
    ]
    # The /flaky/ document's first answer was a 503; the history shows the retry.
    assert (
        "  workflow 3 PREPARE attempt 1, tried again after 0.2 s: DocumentUnavailable: "
        f"GET {documents}/flaky/field-notes.txt answered 503 Service Unavailable\n"
    ) in done.stdout
    lighthouse = (reports / "report-1.md").read_text(encoding="utf-8")
    assert lighthouse == (
        "# The Lighthouse Keeper\n"
        "\n"
        f"Workflow 1 fetched <{documents}/docs/lighthouse.txt> (291 bytes, text/plain) on "
        "attempt 1.\n"
        "\n"
        "| measure | value |\n"
        "|---|---|\n"
        "| lines | 6 |\n"
        "| words | 54 |\n"
        "| unique words | 29 |\n"
        "| characters | 291 |\n"
        "| average word length | 4.24 |\n"
        "| longest word | lighthouse |\n"
        "\n"
        "## The 5 most frequent words\n"
        "\n"
        "| word | count |\n"
        "|---|---|\n"
        "| the | 15 |\n"
        "| and | 3 |\n"
        "| keeper | 3 |\n"
        "| lamp | 3 |\n"
        "| every | 2 |\n"
    )
    assert f"Report of workflow 1 ({reports / 'report-1.md'}):\n\n{lighthouse}" in done.stdout
    notes = (reports / "report-2.md").read_text(encoding="utf-8")
    assert notes.startswith("# Release notes\n")  # the JSON document's own title
    assert "(223 bytes, application/json) on attempt 1." in notes
    assert "| words | 30 |\n| unique words | 27 |\n" in notes
    field = (reports / "report-3.md").read_text(encoding="utf-8")
    assert field.startswith("# Field notes, day one.\n")
    assert "on attempt 2." in field
    assert "| words | 31 |\n" in field
    assert "| the | 4 |\n" in field
    assert done.stdout.endswith(
        "All 3 workflows COMPLETE in "
        + done.stdout.rsplit("COMPLETE in ", 1)[1].split(" ", 1)[0]
        + " s; the orchestrator and the document server are stopped.\n"
    )
    assert (tmp_path / "orchestrator.db").is_file()
    assert "Finished server process" in (tmp_path / "orchestrator.log").read_text(encoding="utf-8")
    assert not is_listening(documents)
    assert not is_listening(orchestrator)


def test_the_example_exits_1_naming_the_workflow_that_failed_and_why(tmp_path: Path) -> None:
    done = run_example(
        tmp_path, "--document", "/docs/blank.txt", "--document", "/docs/lighthouse.txt"
    )

    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == (
        "report_pipeline: workflow 1 (report-blank) is FAILED in VALIDATE: ReportInvalid: "
        "the document has 0 words; at least 1 needed (min_words)\n"
    )
    reports = tmp_path / "reports"
    assert SUMMARY_ROW.findall(done.stdout) == [
        ("1", "FAILED", "0", "attempt 1", "-"),
        ("2", "COMPLETE", "54", "attempt 1", str(reports / "report-2.md")),
    ]
    assert done.stdout.endswith("1 of 2 workflows did not complete.\n")
    assert sorted(path.name for path in reports.glob("*.md")) == ["report-2.md"]


def test_ctrl_c_stops_the_example_and_both_servers(tmp_path: Path) -> None:
    # A pause per line keeps EXECUTE running (about 2 s for the longest document) when the
    # interrupt comes; the server lets running steps finish before it stops.
    process = subprocess.Popen(
        [sys.executable, str(RUN), "--out", str(tmp_path), "--line-delay", "0.3"],
        cwd=ROOT,
        env=server_environment({"PYTHONUNBUFFERED": "1"}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        printed = ""
        while not printed.endswith("\nStarted 3 workflows: 1, 2, 3.\n"):
            line = process.stdout.readline()  # bounded: the run prints this line in ~1 s
            assert line, f"the run ended before it started its workflows:\n{printed}"
            printed += line
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=RUN_DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 130, printed + rest + errors
    assert errors == "report_pipeline: interrupted; both servers are stopped.\n"
    documents, orchestrator = urls_in(printed)
    assert not is_listening(documents)
    assert not is_listening(orchestrator)
    assert "Finished server process" in (tmp_path / "orchestrator.log").read_text(encoding="utf-8")
