"""`wait()` without the I/O: which workflow answers end the wait, and the pauses between polls.

Polling `GET /workflow/{id}` with growing pauses keeps the wait simple and correct whatever
happens to connections in between: every poll reads the whole current state, so nothing can
be missed, and each poll goes through the client's retries.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

from orchestrator.client.errors import WaitTimeout
from orchestrator.client.types import TERMINAL_STATES, State, Workflow

#: The first pause between polls; each next one is GROWTH times longer, up to the maximum.
FIRST_PAUSE = 0.02
GROWTH = 1.5


class WaitPlan:
    """One wait: the states that end it, its deadline, and the pause before each next poll."""

    def __init__(
        self, workflow_id: int, timeout: float, states: Iterable[str], max_pause: float
    ) -> None:
        if not math.isfinite(timeout) or timeout < 0:
            raise ValueError(f"timeout must be a finite number of seconds >= 0, got {timeout}")
        wanted = frozenset(states)
        known = {state.value for state in State}
        if not wanted or not wanted <= known:
            raise ValueError(
                f"states must be some of {', '.join(known_in_order())}; got {sorted(wanted)}"
            )
        self.workflow_id = workflow_id
        self.timeout = timeout
        self.states = wanted
        self._max_pause = max_pause
        self._pause = FIRST_PAUSE
        self._deadline = time.monotonic() + timeout

    def reached(self, workflow: Workflow) -> bool:
        """Whether `workflow` is in one of the states. A terminal state counts once its last
        step is recorded: COMPLETE's finalize result is in `task_results` by then."""
        if workflow.status not in self.states:
            return False
        return workflow.status not in TERMINAL_STATES or workflow.step_running is None

    def pause(self, workflow: Workflow) -> float:
        """Seconds to sleep before the next poll; WaitTimeout once the deadline has passed."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(self.workflow_id, self.states, self.timeout, workflow.status)
        pause = min(self._pause, left)
        self._pause = min(self._pause * GROWTH, self._max_pause)
        return pause


def known_in_order() -> list[str]:
    """The states this release knows, in lifecycle order."""
    return [state.value for state in State]
