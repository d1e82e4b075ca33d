"""Unit tests of the pure domain: the transition table, decide/evolve, and their properties."""

from __future__ import annotations
