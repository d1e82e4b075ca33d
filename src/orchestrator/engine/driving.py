"""The driving skeleton shared by workflows and standalone tasks.

A driver loads its aggregate fresh, asks what to do next, does it (record a command, or run the
work in the pool and record its outcome) and goes on with the aggregate that produced. A refused
record (None) means the aggregate moved on elsewhere (cancelled, or an append that reported an
error had committed): it looks again, and stops if nothing changed rather than spin. What the
next step is, and how it runs, stays with the coordinator and the task runner.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar


class Versioned(Protocol):
    """An aggregate as the skeleton sees it: its version tells whether it changed."""

    @property
    def version(self) -> int: ...


A = TypeVar("A", bound=Versioned)


async def drive(
    load: Callable[[], Awaitable[A | None]],
    next_step: Callable[[A], Awaitable[A | None] | None],
    *,
    draining: Callable[[], bool],
    first: A | None = None,
) -> A | None:
    """Drive one aggregate until nothing is left to do; the aggregate as last seen.

    `load` reads it fresh (None once it is gone); `next_step` returns the awaitable that does
    its next step and yields the aggregate after it (None if refused), or None when there is
    nothing to do; `draining` true (the server stops) means: finish the step in hand, begin no
    other. Cancelling the task that runs this ends the loop where it awaits. `first`, when the
    caller has just produced the aggregate (its own append), saves the first read; should
    anyone else have moved it meanwhile, the next record conflicts and reads it afresh.
    """
    current = first if first is not None else await load()
    while current is not None and not draining():
        step = next_step(current)
        if step is None:
            break
        after = await step
        if after is None:
            after = await load()
            if after is None or after.version == current.version:
                break
        current = after
    return current
