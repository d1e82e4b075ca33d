"""How the tools show their progress: a bar with rate and time left on a terminal, plain lines
(at most one a second) when stderr is a file or a pipe, so logs stay readable."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from orchestrator.progress import Meter, Reading

_BAR_WIDTH = 30


def display(stream: TextIO | None = None) -> tuple[Callable[[Reading], None], float]:
    """How to show readings on `stream` (stderr), and how often: a bar redrawn ten times a
    second on a terminal, else a line a second."""
    target = stream or sys.stderr
    if target.isatty():
        return bar_display(target), 0.1
    return line_display(target), 1.0


def meter(what: str, total: int | None, stream: TextIO | None = None) -> Meter:
    """A meter that shows itself on `stream` (stderr): a bar on a terminal, lines otherwise."""
    show, interval = display(stream)
    return Meter(what, total, show, interval=interval)


def line(reading: Reading) -> str:
    """`verify: 12,000/27,000 events, 25,000 events/s, ETA 0.6 s`."""
    done = f"{reading.done:,}" if reading.total is None else f"{reading.done:,}/{reading.total:,}"
    text = f"{reading.what}: {done} events, {reading.rate:,.0f} events/s"
    if reading.eta is not None and not reading.final:
        text += f", ETA {reading.eta:.1f} s"
    return text


def bar(reading: Reading) -> str:
    """`verify [##########--------------------]  33% 9,000/27,000 25,000/s ETA 0.7 s`."""
    if reading.total:
        share = min(reading.done / reading.total, 1.0)
        filled = round(share * _BAR_WIDTH)
        meter = "#" * filled + "-" * (_BAR_WIDTH - filled)
        text = f"{reading.what} [{meter}] {share:4.0%} {reading.done:,}/{reading.total:,}"
    else:
        text = f"{reading.what} {reading.done:,}"
    text += f" {reading.rate:,.0f}/s"
    if reading.eta is not None and not reading.final:
        text += f" ETA {reading.eta:.1f} s"
    return text


def line_display(stream: TextIO) -> Callable[[Reading], None]:
    """Each reading on a line of its own."""

    def show(reading: Reading) -> None:
        print(line(reading), file=stream, flush=True)

    return show


def bar_display(stream: TextIO) -> Callable[[Reading], None]:
    """One line redrawn in place; the last reading ends it."""
    width = 0

    def show(reading: Reading) -> None:
        nonlocal width
        text = bar(reading)
        stream.write("\r" + text.ljust(width) + ("\n" if reading.final else ""))
        stream.flush()
        width = 0 if reading.final else len(text)

    return show
