"""Every figure of the suite, in the order it runs: its name, unit, function, and the database
kinds it applies to. A figure function takes the run's Context and returns (value, reference)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from suite import suite_http, suite_large, suite_recovery, suite_sse, suite_store
from suite.context import Context
from suite.figures import Figure, Measured

ALL_KINDS = ("sqlite", "postgres")


@dataclass(frozen=True)
class FigureSpec:
    """One figure the suite can measure."""

    name: str
    unit: str
    measure: Callable[[Context], Awaitable[Measured]]
    kinds: tuple[str, ...] = ALL_KINDS


FIGURES = [
    FigureSpec("e2e_workflows_per_s", "workflows/s", suite_http.e2e_workflows_per_s),
    FigureSpec("post_p99_ms", "ms", suite_http.post_p99_ms),
    FigureSpec(
        "e2e_workflows_per_s_2proc",
        "workflows/s",
        suite_http.e2e_workflows_per_s_2proc,
        kinds=("postgres",),
    ),
    FigureSpec("get_workflow_rps", "requests/s", suite_http.get_workflow_rps),
    FigureSpec("append_events_per_s", "events/s", suite_store.append_events_per_s),
    FigureSpec("replay_events_per_s", "events/s", suite_store.replay_events_per_s),
    FigureSpec("rebuild_events_per_s", "events/s", suite_store.rebuild_events_per_s),
    FigureSpec("verify_events_per_s", "events/s", suite_store.verify_events_per_s),
    FigureSpec("stats_p50_ms_small", "ms", suite_large.stats_p50_ms_small),
    FigureSpec("stats_p50_ms_large", "ms", suite_large.stats_p50_ms_large),
    FigureSpec("rss_mb_large", "MB", suite_large.rss_mb_large),
    FigureSpec("db_bytes_per_workflow", "bytes", suite_large.db_bytes_per_workflow),
    FigureSpec("startup_s_large", "s", suite_large.startup_s_large),
    FigureSpec("recovery_s", "s", suite_recovery.recovery_s),
    FigureSpec("failover_s", "s", suite_recovery.failover_s, kinds=("postgres",)),
    FigureSpec("sse_lag_p99_ms", "ms", suite_sse.sse_lag_p99_ms),
]


def chosen(kind: str, only: list[str] | None) -> list[FigureSpec]:
    """The figures to measure on `kind`: all of them, or those named in `only` (ValueError
    naming any unknown name)."""
    known = {spec.name for spec in FIGURES}
    unknown = [name for name in only or [] if name not in known]
    if unknown:
        raise ValueError(
            f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return [spec for spec in FIGURES if kind in spec.kinds and (only is None or spec.name in only)]


async def measure(ctx: Context, spec: FigureSpec) -> Figure:
    """Run one figure; a failure becomes a figure without a value whose note says why (the run
    goes on with the next one)."""
    ctx.say(f"--- {spec.name}")
    try:
        value, reference = await spec.measure(ctx)
    except Exception as exc:
        ctx.say(f"{spec.name} failed: {type(exc).__name__}: {exc}")
        note = f"failed: {type(exc).__name__}: {exc}"
        return Figure(spec.name, None, spec.unit, None, note)
    figure = Figure(spec.name, value, spec.unit, reference, ctx.notes.get(spec.name, ""))
    ctx.say(f"{spec.name} = {value:,.4g} {spec.unit}")
    return figure
