"""Running workflows: the command service, the coordinator and the worker pool."""

from __future__ import annotations
