"""The report pipeline's tasks: fetch a document over HTTP, count its words, check the counts,
write a Markdown report. Loaded by the server with `orchestrator serve --tasks pipeline_tasks`
(run.py starts it in this directory, which the loader puts on the import path).

    INIT      check_setup        the report directory is usable; makes the workflow's work dir
    PREPARE   fetch_document     GET config.url (httpx, with a timeout; retried twice)
    EXECUTE   count_words        word statistics of the text, reporting progress per line
    VALIDATE  check_counts       the statistics add up and the document has words
    COMPLETE  write_report       report-<workflow id>.md in config.report_dir; returns its path

A step is not given the previous step's result (TaskContext carries the workflow's config, not
its `task_results`), so each step leaves its output in a file of the workflow's own work
directory, `<report_dir>/work/workflow-<id>/`, and the next step reads it from there. Steps
run at least once (a step that was running when the server stopped runs again at the next
start), so every file is written whole or not at all (a temporary file, then a rename) and a
step run twice writes the same file twice. Workflow ids are those of one database, so a
report_dir belongs to one server's database.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import msgspec

from orchestrator.tasks import TaskCancelled, TaskContext, step

T = TypeVar("T")


class ReportConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A workflow's config. The server converts it before recording the workflow, so a wrong
    one is refused (422 naming the field) and never reaches a step."""

    #: The document to fetch.
    url: Annotated[str, msgspec.Meta(pattern=r"^https?://\S+$")]
    #: Where the report (and the workflow's work directory) goes; an absolute path.
    report_dir: Annotated[str, msgspec.Meta(min_length=1)]
    #: The report's title; by default the document's own (JSON `title`, or its first line).
    title: str | None = None
    #: How many of the most frequent words the report lists.
    top: Annotated[int, msgspec.Meta(ge=1, le=50)] = 5
    #: Seconds the fetch may wait to connect, and for each piece of the answer.
    timeout: Annotated[float, msgspec.Meta(gt=0, le=10)] = 5.0
    #: The largest document accepted, in bytes.
    max_bytes: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 1_000_000
    #: Fewer words than this fails VALIDATE.
    min_words: Annotated[int, msgspec.Meta(ge=0)] = 1
    #: Seconds EXECUTE pauses after each line: 0, unless you want to watch its progress.
    line_delay: Annotated[float, msgspec.Meta(ge=0, le=5)] = 0.0

    def __post_init__(self) -> None:
        # msgspec turns this ValueError into a validation error, so the server refuses the
        # config (422) before recording the workflow, as it does for the constraints above.
        if not os.path.isabs(self.report_dir):
            raise ValueError(
                "report_dir must be an absolute path (the server's working directory is not "
                f"yours), not {self.report_dir!r}"
            )


class JsonDocument(msgspec.Struct, frozen=True):
    """A document served as application/json."""

    title: str
    text: str


class FetchedDocument(msgspec.Struct, frozen=True):
    """What PREPARE leaves for the later steps (document.json)."""

    url: str
    title: str
    text: str
    content_type: str
    size: int
    attempt: int


class TextStatistics(msgspec.Struct, frozen=True):
    """What EXECUTE leaves for the later steps (statistics.json)."""

    lines: int
    words: int
    unique_words: int
    characters: int
    average_word_length: float
    longest_word: str
    #: The `top` most frequent words, most frequent first (ties in alphabetical order).
    top_words: list[tuple[str, int]]
    #: Every word (lower-cased) and how often it occurs.
    counts: dict[str, int]


class DocumentUnavailable(RuntimeError):
    """The document server did not answer with the document."""


class DocumentUnreadable(ValueError):
    """The answer is not a document this pipeline reads (too large, not UTF-8, bad JSON)."""


class ReportInvalid(ValueError):
    """The statistics do not add up, or the document has too few words."""


# A word: letters and digits, with inner apostrophes ("keeper's", also typographic: U+2019);
# "_" is not a letter.
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


def text_statistics(
    text: str, top: int = 5, on_line: Callable[[int, int], None] | None = None
) -> TextStatistics:
    """Word statistics of `text`; `on_line(done, total)` is called after each line."""
    lines = text.splitlines()
    counts: Counter[str] = Counter()
    for done, line in enumerate(lines, start=1):
        counts.update(word.lower().replace("\u2019", "'") for word in _WORD.findall(line))
        if on_line is not None:
            on_line(done, len(lines))
    words = sum(counts.values())
    letters = sum(len(word) * count for word, count in counts.items())
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return TextStatistics(
        lines=len(lines),
        words=words,
        unique_words=len(counts),
        characters=len(text),
        average_word_length=round(letters / words, 2) if words else 0.0,
        longest_word=min(counts, key=lambda word: (-len(word), word)) if counts else "",
        top_words=ranked[:top],
        counts=dict(sorted(counts.items())),
    )


def check_statistics(stats: TextStatistics, text: str, min_words: int = 1) -> int:
    """How many checks passed (all of them); ReportInvalid naming the first that fails."""
    checks: list[tuple[bool, str]] = [
        (
            stats.words >= min_words,
            f"the document has {stats.words} words; at least {min_words} needed (min_words)",
        ),
        (
            sum(stats.counts.values()) == stats.words,
            f"the word counts add up to {sum(stats.counts.values())}, not {stats.words}",
        ),
        (
            len(stats.counts) == stats.unique_words,
            f"{len(stats.counts)} words are counted, not {stats.unique_words} unique words",
        ),
        (
            stats.characters == len(text),
            f"the text has {len(text)} characters, not {stats.characters}",
        ),
        (
            all(stats.counts.get(word) == count for word, count in stats.top_words),
            f"the top words {stats.top_words} do not match their counts",
        ),
        (
            [count for _, count in stats.top_words]
            == sorted(stats.counts.values(), reverse=True)[: len(stats.top_words)],
            f"the top words {stats.top_words} are not the most frequent ones",
        ),
    ]
    for passed, problem in checks:
        if not passed:
            raise ReportInvalid(problem)
    return len(checks)


# The steps ----------------------------------------------------------------------------------
# Every step declares `config=ReportConfig`, so ctx.config is a ReportConfig in each (and the
# server checks a workflow's config against it before recording the workflow).


@step("INIT", config=ReportConfig)
def check_setup(ctx: TaskContext) -> dict[str, Any]:
    """The server can write into report_dir: makes the workflow's work directory there.

    (The config's shape was checked when the workflow was started; whether the directory can
    be written is a question for the server's machine, at run time.)
    """
    config: ReportConfig = ctx.config
    work = work_dir(ctx)
    work.mkdir(parents=True, exist_ok=True)  # an OSError here names the path
    if not os.access(work, os.W_OK):
        raise PermissionError(f"the server cannot write into {work}")
    return {"report_dir": config.report_dir, "work_dir": str(work)}


# retries=2: a document server that fails once (run.py's /flaky/ path answers 503 the first
# time) costs one more attempt, 0.2 s later, not the workflow. timeout=15: one attempt may take
# that long in all; the engine then sets ctx.cancelled, which the download loop watches.
@step("PREPARE", timeout=15, retries=2, backoff=0.2, config=ReportConfig)
def fetch_document(ctx: TaskContext) -> dict[str, Any]:
    """GET the document at config.url and save it as the workflow's document.json."""
    config: ReportConfig = ctx.config
    content_type, raw = download(config.url, config.timeout, config.max_bytes, ctx.cancelled.is_set)
    title, text = read_document(config.url, content_type, raw)
    document = FetchedDocument(
        url=config.url,
        title=config.title or title,
        text=text,
        content_type=content_type,
        size=len(raw),
        attempt=ctx.attempt,
    )
    write_atomically(work_dir(ctx) / "document.json", msgspec.json.encode(document))
    ctx.log.info("fetched %d bytes from %s", len(raw), config.url)
    return {
        "title": document.title,
        "bytes": document.size,
        "content_type": content_type,
        "attempt": ctx.attempt,
    }


@step("EXECUTE", timeout=60, config=ReportConfig)
def count_words(ctx: TaskContext) -> dict[str, Any]:
    """Count the document's words, line by line, reporting progress; save statistics.json."""
    config: ReportConfig = ctx.config
    document = load(work_dir(ctx) / "document.json", FetchedDocument)

    def on_line(done: int, total: int) -> None:
        ctx.progress(done / total, f"line {done} of {total}")
        # Wait on ctx.cancelled, not time.sleep: set when the workflow is cancelled, the step
        # times out or the server stops, and the step then ends at once.
        if ctx.cancelled.wait(config.line_delay):
            raise TaskCancelled(f"counting stopped at line {done} of {total}")

    stats = text_statistics(document.text, config.top, on_line)
    write_atomically(work_dir(ctx) / "statistics.json", msgspec.json.encode(stats))
    # The result is recorded in the workflow's history: a summary, not every count.
    return {
        "lines": stats.lines,
        "words": stats.words,
        "unique_words": stats.unique_words,
        "top_words": stats.top_words,
    }


@step("VALIDATE", config=ReportConfig)
def check_counts(ctx: TaskContext) -> dict[str, Any]:
    """The statistics add up and the document has at least config.min_words words."""
    config: ReportConfig = ctx.config
    document = load(work_dir(ctx) / "document.json", FetchedDocument)
    stats = load(work_dir(ctx) / "statistics.json", TextStatistics)
    passed = check_statistics(stats, document.text, config.min_words)
    return {"valid": True, "checks_passed": passed}


@step("COMPLETE", config=ReportConfig)
def write_report(ctx: TaskContext) -> dict[str, Any]:
    """Write report-<workflow id>.md into config.report_dir; its path is the result."""
    config: ReportConfig = ctx.config
    document = load(work_dir(ctx) / "document.json", FetchedDocument)
    stats = load(work_dir(ctx) / "statistics.json", TextStatistics)
    path = Path(config.report_dir) / f"report-{ctx.workflow_id}.md"
    write_atomically(path, render_report(ctx.workflow_id, document, stats).encode("utf-8"))
    # The work directory stays: were this step to run again (at least once), it reads it again.
    return {"report": str(path), "title": document.title, "words": stats.words}


# Helpers of the steps -------------------------------------------------------------------------


def download(
    url: str, timeout: float, max_bytes: int, cancelled: Callable[[], bool]
) -> tuple[str, bytes]:
    """(content type, body) of GET `url`; DocumentUnavailable unless it answers 200.

    httpx's timeout bounds every wait (connecting, each read), so the loop looks at `cancelled`
    at least that often; the body is read piece by piece so a huge answer is refused early.
    """
    with (
        httpx.Client(timeout=timeout, trust_env=False) as client,
        client.stream("GET", url, headers={"Accept": "application/json, text/plain"}) as answer,
    ):
        if answer.status_code != 200:
            raise DocumentUnavailable(
                f"GET {url} answered {answer.status_code} {answer.reason_phrase}"
            )
        pieces: list[bytes] = []
        size = 0
        for piece in answer.iter_bytes():
            if cancelled():
                raise TaskCancelled(f"the download of {url} was cancelled")
            size += len(piece)
            if size > max_bytes:
                raise DocumentUnreadable(f"{url} is larger than max_bytes={max_bytes}")
            pieces.append(piece)
        content_type = answer.headers.get("content-type", "text/plain")
    return content_type.split(";")[0].strip().lower(), b"".join(pieces)


def read_document(url: str, content_type: str, raw: bytes) -> tuple[str, str]:
    """(title, text) of a fetched document: JSON `{"title", "text"}` or UTF-8 text, whose
    title is its first non-blank line."""
    if content_type == "application/json":
        try:
            document = msgspec.json.decode(raw, type=JsonDocument)
        except msgspec.DecodeError as exc:
            raise DocumentUnreadable(
                f'{url} is not a JSON document {{"title": ..., "text": ...}}: {exc}'
            ) from None
        return document.title, document.text
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentUnreadable(f"{url} is not UTF-8 text: {exc}") from None
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first or url.rstrip("/").rsplit("/", 1)[-1], text


def render_report(workflow_id: int | None, document: FetchedDocument, stats: TextStatistics) -> str:
    """The Markdown report."""
    lines = [
        f"# {document.title}",
        "",
        f"Workflow {workflow_id} fetched <{document.url}> ({document.size} bytes, "
        f"{document.content_type}) on attempt {document.attempt}.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| lines | {stats.lines} |",
        f"| words | {stats.words} |",
        f"| unique words | {stats.unique_words} |",
        f"| characters | {stats.characters} |",
        f"| average word length | {stats.average_word_length:.2f} |",
        f"| longest word | {stats.longest_word} |",
        "",
        f"## The {len(stats.top_words)} most frequent words",
        "",
        "| word | count |",
        "|---|---|",
        *(f"| {word} | {count} |" for word, count in stats.top_words),
    ]
    return "\n".join(lines) + "\n"


def work_dir(ctx: TaskContext) -> Path:
    """The workflow's own directory for the files its steps hand on to each other."""
    config: ReportConfig = ctx.config
    return Path(config.report_dir) / "work" / f"workflow-{ctx.workflow_id}"


def load(path: Path, kind: type[T]) -> T:
    """A file an earlier step wrote; a clear error if it is missing."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=kind)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: the step before did not write it") from None


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all (a step can be stopped, and runs again)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)
