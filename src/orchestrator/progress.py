"""A meter for long tool runs (rebuild, verify, export, import): work done, rate, time left.

It only counts and decides when a reading is due; what a reading looks like (a bar on a
terminal, a plain line in a log) is the caller's (`cli_progress.py`). A leaf: no project imports.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple


class Reading(NamedTuple):
    """How far a run got."""

    what: str
    done: int
    #: The amount of work in all, when known (an import from a stream does not know it).
    total: int | None
    #: Units per second since the start.
    rate: float
    #: Seconds left at that rate (None without a total).
    eta: float | None
    #: True for the last reading, at the end of the run.
    final: bool


class Meter:
    """Counts `what` done against `total` and hands `show` a Reading at most every `interval`
    seconds, and once more at `finish`."""

    def __init__(
        self,
        what: str,
        total: int | None,
        show: Callable[[Reading], None],
        *,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.total = total
        self.done = 0
        self._show = show
        self._interval = interval
        self._clock = clock
        self.began = clock()
        self._last = self.began

    def __call__(self, done: int, *, force: bool = False) -> None:
        """The run got to `done`; show it if a reading is due."""
        self.done = done
        now = self._clock()
        if force or now - self._last >= self._interval:
            self._last = now
            self._show(self.reading(now, final=False))

    def finish(self) -> None:
        """Show the last reading."""
        self._show(self.reading(self._clock(), final=True))

    @property
    def rate(self) -> float:
        """Units per second so far."""
        return self.done / max(self._clock() - self.began, 1e-9)

    def reading(self, now: float, *, final: bool) -> Reading:
        """The reading at `now`."""
        rate = self.done / max(now - self.began, 1e-9)
        eta = None
        if self.total is not None:
            eta = (self.total - self.done) / rate if rate > 0 and self.total > self.done else 0.0
        return Reading(self.what, self.done, self.total, rate, eta, final)


def quiet(reading: Reading) -> None:
    """A display that shows nothing (for callers that only want the counts)."""
