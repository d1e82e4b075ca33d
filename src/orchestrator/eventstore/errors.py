"""Errors of the event store; each backend translates its driver's errors into these."""

from __future__ import annotations


class EventStoreError(Exception):
    """Base of every event-store failure."""


class ConcurrencyConflict(EventStoreError):
    """The stream is not at the version the writer expected: someone else appended first."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(f"stream {stream_id} is at version {actual}, expected {expected}")


class InvalidEvent(EventStoreError):
    """An event the log cannot hold: its payload is not UTF-8 JSON text or its metadata cannot
    be encoded as JSON. Nothing is appended."""


class StoreUnavailable(EventStoreError):
    """The database cannot be reached or refused the operation."""


class SchemaTooNew(EventStoreError):
    """The database was written by a newer release than this one."""


class LeaseLost(EventStoreError):
    """The append was fenced by a lease this process no longer holds: another process took the
    aggregate over (this one was presumed dead) and drives it now. Nothing was appended."""

    def __init__(self, kind: str, aggregate_id: int) -> None:
        self.kind = kind
        self.aggregate_id = aggregate_id
        super().__init__(
            f"{kind} {aggregate_id}: this process's lease was taken over by another process; "
            "its late outcome is not recorded"
        )
