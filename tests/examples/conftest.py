"""Makes the examples importable as `examples.<name>` (pytest's importlib mode puts nothing on
the import path, and the examples are not installed): the repository root goes at the end of
sys.path, so it can shadow nothing that is installed."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
