"""The report pipeline's task module without a server: its pure functions (the word
statistics, their checks, reading a fetched document), its config, and what it declares."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from examples.report_pipeline.pipeline_tasks import (
    DocumentUnreadable,
    ReportConfig,
    ReportInvalid,
    TextStatistics,
    check_statistics,
    read_document,
    text_statistics,
)

from orchestrator.domain.states import State
from orchestrator.tasks import InvalidTaskConfig, load_task_modules

DOCUMENTS = Path(__file__).resolve().parents[2] / "examples" / "report_pipeline" / "documents"


def test_text_statistics_counts_words_case_insensitively_with_inner_apostrophes() -> None:
    stats = text_statistics("The cat's hat.\nthe CAT sat; the_end\n\nThe cat\u2019s mat", top=3)

    assert stats == TextStatistics(
        lines=4,
        words=11,
        unique_words=7,
        characters=50,
        average_word_length=3.36,
        longest_word="cat's",
        top_words=[("the", 4), ("cat's", 2), ("cat", 1)],
        counts={"cat": 1, "cat's": 2, "end": 1, "hat": 1, "mat": 1, "sat": 1, "the": 4},
    )


def test_text_statistics_of_the_lighthouse_document() -> None:
    text = (DOCUMENTS / "lighthouse.txt").read_text(encoding="utf-8")

    stats = text_statistics(text)

    assert (stats.lines, stats.words, stats.unique_words, stats.characters) == (6, 54, 29, 291)
    assert stats.top_words == [("the", 15), ("and", 3), ("keeper", 3), ("lamp", 3), ("every", 2)]


def test_text_statistics_reports_each_line_to_its_callback() -> None:
    seen: list[tuple[int, int]] = []

    text_statistics(
        "one\ntwo three\n\nfour", on_line=lambda done, total: seen.append((done, total))
    )

    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_text_statistics_of_an_empty_text_has_no_words() -> None:
    stats = text_statistics("")

    assert (stats.lines, stats.words, stats.longest_word, stats.top_words) == (0, 0, "", [])
    assert stats.average_word_length == 0.0


def test_check_statistics_passes_statistics_that_add_up() -> None:
    text = "a b b c c c"

    assert check_statistics(text_statistics(text), text) == 6


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"words": 7}, "the word counts add up to 6, not 7"),
        ({"unique_words": 4}, "3 words are counted, not 4 unique words"),
        ({"characters": 10}, "the text has 11 characters, not 10"),
        ({"top_words": [("c", 2)]}, "the top words [('c', 2)] do not match their counts"),
        ({"top_words": [("b", 2)]}, "the top words [('b', 2)] are not the most frequent ones"),
    ],
)
def test_check_statistics_names_what_does_not_add_up(
    change: dict[str, object], problem: str
) -> None:
    text = "a b b c c c"
    stats = msgspec.structs.replace(text_statistics(text), **change)

    with pytest.raises(ReportInvalid) as raised:
        check_statistics(stats, text)

    assert str(raised.value) == problem


def test_check_statistics_refuses_a_document_with_too_few_words() -> None:
    with pytest.raises(ReportInvalid) as raised:
        check_statistics(text_statistics(" \n...\n"), " \n...\n")

    assert str(raised.value) == "the document has 0 words; at least 1 needed (min_words)"


def test_read_document_takes_the_title_from_json_or_the_first_line() -> None:
    url = "http://127.0.0.1/docs/x"
    as_json = read_document(url, "application/json", b'{"title": "T", "text": "words here"}')
    as_text = read_document(url, "text/plain", b"\n  First line \nsecond\n")
    blank = read_document(url, "text/plain", b"\n")

    assert as_json == ("T", "words here")
    assert as_text == ("First line", "\n  First line \nsecond\n")
    assert blank == ("x", "\n")


def test_read_document_refuses_what_it_cannot_read() -> None:
    with pytest.raises(
        DocumentUnreadable, match=r"is not a JSON document .*missing required field `text`"
    ):
        read_document("http://h/d", "application/json", b'{"title": "only"}')
    with pytest.raises(DocumentUnreadable, match="is not UTF-8 text"):
        read_document("http://h/d", "text/plain", b"\xff\xfe")


def test_the_module_declares_a_task_for_every_state_that_runs_one() -> None:
    registry = load_task_modules(["examples.report_pipeline.pipeline_tasks"])

    names = {state: spec.name for state, spec in registry.steps().items()}
    fetch = registry.spec_of(State.PREPARE)

    assert names == {
        State.INIT: "check_setup",
        State.PREPARE: "fetch_document",
        State.EXECUTE: "count_words",
        State.VALIDATE: "check_counts",
        State.COMPLETE: "write_report",
    }
    assert (fetch.timeout, fetch.retries, fetch.backoff) == (15, 2, 0.2)
    assert fetch.config_type is ReportConfig


def test_a_config_the_steps_cannot_take_is_refused_naming_the_field() -> None:
    registry = load_task_modules(["examples.report_pipeline.pipeline_tasks"])
    good = {"url": "http://127.0.0.1:1/docs/a.txt", "report_dir": "/tmp/reports"}

    registry.check_config(good)
    with pytest.raises(InvalidTaskConfig, match=r"at `\$.config.url`"):
        registry.check_config({**good, "url": "ftp://example/a.txt"})
    with pytest.raises(InvalidTaskConfig, match=r"unknown field `topp`"):
        registry.check_config({**good, "topp": 3})
    with pytest.raises(InvalidTaskConfig) as relative:
        registry.check_config({**good, "report_dir": "reports"})

    assert str(relative.value) == (
        "config of task 'check_setup': report_dir must be an absolute path (the server's "
        "working directory is not yours), not 'reports' - at `$.config`"
    )
