"""Tests of the benchmark suite (bench/run.py): its output formats, and one small run."""

from __future__ import annotations
