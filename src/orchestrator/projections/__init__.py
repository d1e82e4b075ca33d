"""Read models kept from the log: workflows (detail and list) and stats. Disposable: rebuildable."""

from __future__ import annotations
