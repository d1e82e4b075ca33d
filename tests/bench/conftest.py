"""bench/ on the import path, as it is for `python bench/run.py`: its modules import each other
by their top-level names (`suite.figures`, `httpclient`)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
