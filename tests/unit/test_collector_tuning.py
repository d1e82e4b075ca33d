"""`serve` sets the collector for a long-running server: start-up's objects set aside, young
objects collected every 20,000 allocations (see cli._tune_collector)."""

from __future__ import annotations

import gc

from orchestrator.cli import _tune_collector


def test_serve_sets_start_up_aside_and_collects_young_objects_less_often() -> None:
    before = gc.get_threshold()
    try:
        _tune_collector()
        assert gc.get_threshold() == (20_000, 20, 20)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
