"""The Python client (`orchestrator.client`) against a real `orchestrator serve` process."""

from __future__ import annotations
