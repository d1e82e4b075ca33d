"""The engine without HTTP: command service, coordinator, task runner and worker pools, wired by
`build_runtime` with in-test task functions."""

from __future__ import annotations
