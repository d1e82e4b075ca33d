"""The Orchestrator's arguments, checked before any command is built: the bounds the HTTP API's
request types put on the same values, so both accept the same workflows and tasks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec

from orchestrator.domain.states import State
from orchestrator.domain.tasks import TaskStatus

MAX_NAME = 255
MAX_DESCRIPTION = 10_000
MAX_TASK_RETRIES = 10
MAX_PAGE = 1000

_encoder = msgspec.json.Encoder()


def checked_name(name: str) -> str:
    """A workflow's or task's name: 1 to 255 characters; else ValueError."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME:
        raise ValueError(f"name must be a string of 1 to {MAX_NAME} characters, got {name!r:.80}")
    return name


def checked_description(description: str | None) -> str | None:
    """None or at most 10,000 characters; else ValueError."""
    if description is not None and (
        not isinstance(description, str) or len(description) > MAX_DESCRIPTION
    ):
        raise ValueError(
            f"description must be None or a string of at most {MAX_DESCRIPTION} characters"
        )
    return description


def stored_config(config: Mapping[str, Any] | None, max_bytes: int) -> dict[str, Any]:
    """`config` as the log will give it back (JSON values), within `max_bytes` as JSON.

    Recording the decoded form keeps the state a command returns equal to the state folded from
    the log later (a tuple comes back a list, for one).
    """
    if config is None:
        return {}
    if not isinstance(config, Mapping) or not all(isinstance(key, str) for key in config):
        raise TypeError(f"config must be a mapping with string keys, got {type(config).__name__}")
    try:
        encoded = _encoder.encode(config)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"config must hold only JSON values: {exc}") from None
    if len(encoded) > max_bytes:
        raise ValueError(
            f"config is {len(encoded)} bytes as JSON, over the limit of {max_bytes} "
            "(MAX_CONFIG_BYTES)"
        )
    stored: dict[str, Any] = msgspec.json.decode(encoded)
    return stored


def checked_retries(max_retries: int) -> int:
    """A standalone task's `max_retries`: 0 to 10; else ValueError."""
    if (
        isinstance(max_retries, bool)
        or not isinstance(max_retries, int)
        or not 0 <= max_retries <= MAX_TASK_RETRIES
    ):
        raise ValueError(
            f"max_retries must be an integer from 0 to {MAX_TASK_RETRIES}, got {max_retries!r}"
        )
    return max_retries


def checked_version(at_version: int | None) -> int | None:
    """None, or a positive integer; else ValueError."""
    if at_version is not None and (
        isinstance(at_version, bool) or not isinstance(at_version, int) or at_version < 1
    ):
        raise ValueError(f"at_version must be a positive integer, got {at_version!r}")
    return at_version


def page_of(skip: int, limit: int) -> tuple[int, int]:
    """(`skip` >= 0, `limit` from 1 to 1000), checked; else ValueError."""
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise ValueError(f"skip must be an integer >= 0, got {skip!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE}, got {limit!r}")
    return skip, limit


def state_of(value: State | str) -> State:
    """A workflow state, from the enum or its name in any case; else ValueError naming all."""
    if isinstance(value, State):
        return value
    try:
        return State(str(value).upper())
    except ValueError:
        allowed = ", ".join(state.value for state in State)
        raise ValueError(f"state must be one of {allowed}, got {value!r}") from None


def status_of(value: TaskStatus | str) -> TaskStatus:
    """A task status, from the enum or its name in any case; else ValueError naming all."""
    if isinstance(value, TaskStatus):
        return value
    try:
        return TaskStatus(str(value).upper())
    except ValueError:
        allowed = ", ".join(status.value for status in TaskStatus)
        raise ValueError(f"status must be one of {allowed}, got {value!r}") from None


def checked_timeout(timeout: float) -> float:
    """A finite number of seconds >= 0; else TypeError or ValueError."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
    if not math.isfinite(timeout) or timeout < 0:
        raise ValueError(f"timeout must be a finite number of seconds >= 0, got {timeout!r}")
    return float(timeout)
