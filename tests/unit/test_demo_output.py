"""What `orchestrator demo` prints, checked against a fake API: no server, no sockets."""

from __future__ import annotations

import copy
import io
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator import demo as demo_module
from orchestrator.cli import main
from orchestrator.demo import SCENES, Demo, DidNotFinish, menu_text
from orchestrator.demo_url import URL_EXAMPLE, BadUrl, normalize_url

NOW = datetime(2026, 11, 29, 23, 0, 0, tzinfo=UTC)


class FakeApi:
    """Answers GET /workflow/{id} from a dict the test changes between polls, and the stats."""

    def __init__(self, *workflows: dict[str, Any]) -> None:
        self.workflows = {workflow["workflow_id"]: workflow for workflow in workflows}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """Answer one request as the server would."""
        assert (method, body) == ("GET", None), f"unexpected {method} {path} {body!r}"
        if path == "/execution/stats":
            return {
                "worker_pool": {"max_workers": 5, "active_tasks": 0, "queue_size": 0},
                "workflows": {"total": 1, "complete": 1},
            }
        workflow_id = int(path.removeprefix("/workflow/"))
        return copy.deepcopy(self.workflows[workflow_id])


def move(
    number: int, source: str, target: str, trigger: str, at: str, error: str | None = None
) -> dict[str, Any]:
    """A transition as the API shows it."""
    metadata: dict[str, Any] = {"version": number} | ({"error": error} if error else {})
    return {
        "id": number,
        "from_state": source,
        "to_state": target,
        "trigger": trigger,
        "transition_metadata": metadata,
        "timestamp": at,
        "created_at": at,
    }


def workflow(workflow_id: int, status: str, *moves: dict[str, Any]) -> dict[str, Any]:
    """A workflow read as the API answers it, with no step running."""
    return {
        "workflow_id": workflow_id,
        "name": f"w{workflow_id}",
        "status": status,
        "retries": 0,
        "error_message": None,
        "step_running": None,
        "transitions": list(moves),
        "task_results": {},
    }


def demo_on(api: FakeApi) -> tuple[Demo, io.StringIO]:
    """A demo printing into a buffer, with a fixed clock and no pause between polls."""
    out = io.StringIO()
    return Demo(api, out, poll=0, clock=lambda: NOW), out


def test_a_poll_that_sees_several_transitions_prints_them_in_time_order_with_their_own_times() -> (
    None
):
    api = FakeApi(
        workflow(
            1,
            "EXECUTE",
            move(4, "INIT", "PREPARE", "prepare", "2026-11-29T22:59:58.100000Z"),
            move(9, "PREPARE", "EXECUTE", "execute", "2026-11-29T22:59:58.300000Z"),
        ),
        workflow(2, "PREPARE", move(6, "INIT", "PREPARE", "prepare", "2026-11-29T22:59:58.2Z")),
    )
    demo, out = demo_on(api)

    demo.catch_up([1, 2])

    assert out.getvalue().splitlines() == [
        "[22:59:58.100000] workflow 1: INIT -> PREPARE (prepare)",
        "[22:59:58.200000] workflow 2: INIT -> PREPARE (prepare)",
        "[22:59:58.300000] workflow 1: PREPARE -> EXECUTE (execute)",
    ]


def test_a_transition_time_with_an_offset_is_printed_in_utc() -> None:
    api = FakeApi(
        workflow(1, "PREPARE", move(4, "INIT", "PREPARE", "prepare", "2026-11-29T23:30:00.5+01:00"))
    )
    demo, out = demo_on(api)

    demo.catch_up([1])

    assert out.getvalue() == "[22:30:00.500000] workflow 1: INIT -> PREPARE (prepare)\n"


def test_a_failure_followed_again_after_retry_is_printed_once_with_its_error() -> None:
    failed = move(4, "INIT", "FAILED", "fail", "2026-11-29T22:59:58.1Z", error="Boom: on purpose")
    api = FakeApi(workflow(1, "FAILED", failed))
    demo, out = demo_on(api)

    demo.follow([1])
    demo.follow([1])  # polled again while still FAILED
    api.workflows[1] = workflow(
        1,
        "COMPLETE",
        failed,
        move(5, "FAILED", "INIT", "retry", "2026-11-29T22:59:58.2Z"),
        move(8, "INIT", "PREPARE", "prepare", "2026-11-29T22:59:58.3Z"),
    )
    demo.follow([1])

    assert out.getvalue().splitlines() == [
        "[22:59:58.100000] workflow 1: INIT -> FAILED (fail): Boom: on purpose",
        "[22:59:58.200000] workflow 1: FAILED -> INIT (retry)",
        "[22:59:58.300000] workflow 1: INIT -> PREPARE (prepare)",
    ]


def test_follow_gives_up_naming_the_workflow_that_did_not_finish() -> None:
    api = FakeApi(workflow(7, "EXECUTE"))
    demo, _ = demo_on(api)

    with pytest.raises(DidNotFinish, match="workflow 7 did not finish within 0 s"):
        demo.follow([7], timeout=0)


def test_the_summary_prints_each_task_result_flat_without_its_wrapper() -> None:
    done = workflow(1, "COMPLETE")
    done["task_results"] = {
        "EXECUTE": {
            "status": "executed",
            "iterations": 10,
            "success": True,
            "result": {"status": "executed", "iterations": 10},
            "task_type": "execute",
        },
        "VALIDATE": {
            "status": "invalid",
            "success": False,
            "result": {"status": "invalid"},
            "task_type": "validate",
        },
        "INIT": {"status": "initialized"},  # an older server's flat entry
    }
    demo, out = demo_on(FakeApi())

    demo.summary(done)

    assert out.getvalue().splitlines()[1:] == [
        '        EXECUTE  execute     {"iterations": 10, "status": "executed"}',
        '       VALIDATE  validate    {"status": "invalid"}  (failed)',
        '           INIT: {"status": "initialized"}',
    ]


def test_the_menu_lists_every_scene_under_its_heading_number_and_title() -> None:
    entries = re.findall(r"\[(\w+)\] (.+?)(?=  |$)", menu_text(), re.MULTILINE)

    scenes = [(int(key), title) for key, title in entries if key.isdigit()]

    assert scenes == [(n, scene.title) for n, scene in enumerate(SCENES, 1)]
    assert scenes[:2] == [(1, "Automatic workflow"), (2, "Manual workflow step by step")]
    assert [key for key, _ in entries if not key.isdigit()] == list("asmncwlq")


def test_a_narrow_menu_breaks_lines_between_entries_only() -> None:
    lines = menu_text(width=30).splitlines()

    assert "            [2] Manual workflow step by step" not in lines
    assert "          [2] Manual workflow step by step" in lines
    assert all(re.fullmatch(r"(scenes:   |commands: | {10})\[\w\] .+", line) for line in lines)


def test_playing_a_scene_prints_the_heading_the_menu_gives_it() -> None:
    demo, out = demo_on(FakeApi())
    number = next(n for n, scene in enumerate(SCENES, 1) if scene.title == "Execution stats")

    demo.play(number)

    assert out.getvalue().splitlines()[:2] == ["", f"=== {number}. Execution stats ==="]
    assert f"[{number}] Execution stats" in menu_text()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("localhost:8000", "http://localhost:8000"),
        ("127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("  127.0.0.1:8000/ ", "http://127.0.0.1:8000"),
        ("example.com", "http://example.com"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("HTTPS://Example.com:443/", "https://Example.com:443"),
        ("https://example.com/orchestrator/", "https://example.com/orchestrator"),
        ("[::1]:8000", "http://[::1]:8000"),
        ("http://[fe80::1%25eth0]:8000", "http://[fe80::1%25eth0]:8000"),
        ("http:8000", "http://http:8000"),  # the host "http" on port 8000
    ],
)
def test_a_good_url_is_given_a_scheme_if_it_has_none(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("", "it is empty"),
        ("ftp://x", "the scheme must be http or https, not 'ftp'"),
        ("http://", "it names no host"),
        ("::::", "a host with ':' in it must be an IPv6 address in brackets"),
        ("::1", "a host with ':' in it must be an IPv6 address in brackets"),
        # Python 3.11.4 and later refuse it in urlsplit already.
        ("[::::]:80", ("'::::' is not an IPv6 address", "it cannot be parsed")),
        ("[::1]x", "'x' after the IPv6 address is not a port"),
        ("http://[::1", "it cannot be parsed"),
        ("localhost:70000", "the port must be a number from 1 to 65535, not '70000'"),
        ("localhost:0", "the port must be a number from 1 to 65535, not '0'"),
        ("localhost:", "the port must be a number from 1 to 65535, not ''"),
        ("localhost:http", "the port must be a number from 1 to 65535, not 'http'"),
        ("http:localhost:8000", "the scheme is written http:// or https://"),
        ("a b:80", "it must not contain spaces"),
        ("exa$mple:80", "'exa$mple' is not a host name or IP address"),
        ("user:secret@localhost:8000", "a user name or password"),
        ("localhost:8000/?x=1", "it must not have a query"),
        ("localhost:8000#top", "it must not have a query"),
    ],
)
def test_a_bad_url_is_refused_saying_why_and_what_a_good_one_looks_like(
    given: str, reason: str | tuple[str, ...]
) -> None:
    reasons = (reason,) if isinstance(reason, str) else reason

    with pytest.raises(BadUrl) as refused:
        normalize_url(given)

    message = str(refused.value)
    assert message.startswith(tuple(f"bad server URL {given!r}: {r}" for r in reasons))
    assert message.endswith(f"give one like {URL_EXAMPLE}")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        (None, True),
        ("127.0.0.1:8000", True),
        ("http://localhost:8000", True),
        ("http://[::1]:8000", True),
        ("http://orchestrator.example:8000", False),
        ("https://10.1.2.3", False),
    ],
)
def test_the_demo_sends_api_token_only_to_a_local_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str | None, sent: bool
) -> None:
    token = "demo-token-0123456789"
    monkeypatch.setenv("API_TOKEN", token)
    monkeypatch.delenv("API_HOST", raising=False)
    given: list[str | None] = []

    def fake_run_demo(url: str, *, is_interactive: bool, token: str | None = None) -> int:
        given.append(token)
        return 0

    monkeypatch.setattr(demo_module, "run_demo", fake_run_demo)
    assert main(["demo", *(["--url", url] if url else [])]) == 0

    assert given == [token if sent else None]
    warned = "not sending API_TOKEN to a non-local --url" in capsys.readouterr().err
    assert warned is not sent
