"""The tools' progress: the meter's readings and how a terminal and a log show them."""

from __future__ import annotations

import io

from orchestrator.cli_progress import bar, bar_display, line, line_display
from orchestrator.progress import Meter, Reading


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_meter_shows_a_reading_at_most_every_interval_and_once_at_the_end() -> None:
    clock = Clock()
    shown: list[Reading] = []
    meter = Meter("verify", 1000, shown.append, interval=1.0, clock=clock)

    clock.now = 100.5
    meter(100)  # too soon: nothing shown
    clock.now = 101.0
    meter(250)
    clock.now = 101.2
    meter(300)
    clock.now = 102.0
    meter(1000)
    meter.finish()

    assert [(r.done, r.final) for r in shown] == [(250, False), (1000, False), (1000, True)]
    assert shown[0].rate == 250.0
    assert shown[0].eta == 3.0  # 750 left at 250 a second
    assert shown[-1].eta == 0.0


def test_a_reading_without_a_total_has_no_time_left() -> None:
    clock = Clock()
    shown: list[Reading] = []
    meter = Meter("import", None, shown.append, clock=clock)
    clock.now = 102.0
    meter(500)

    assert shown == [Reading("import", 500, None, 250.0, None, False)]


def test_a_log_gets_plain_lines() -> None:
    reading = Reading("verify", 9000, 27000, 25000.0, 0.72, False)

    assert line(reading) == "verify: 9,000/27,000 events, 25,000 events/s, ETA 0.7 s"
    assert line(reading._replace(final=True)) == "verify: 9,000/27,000 events, 25,000 events/s"
    out = io.StringIO()
    line_display(out)(reading)
    assert out.getvalue() == "verify: 9,000/27,000 events, 25,000 events/s, ETA 0.7 s\n"


def test_a_terminal_gets_one_bar_redrawn_in_place() -> None:
    out = io.StringIO()
    show = bar_display(out)

    show(Reading("rebuild", 9000, 27000, 25000.0, 0.72, False))
    show(Reading("rebuild", 27000, 27000, 26000.0, 0.0, True))

    first = "rebuild [##########--------------------]  33% 9,000/27,000 25,000/s ETA 0.7 s"
    last = "rebuild [##############################] 100% 27,000/27,000 26,000/s"
    assert bar(Reading("rebuild", 9000, 27000, 25000.0, 0.72, False)) == first
    assert out.getvalue() == "\r" + first + "\r" + last.ljust(len(first)) + "\n"
