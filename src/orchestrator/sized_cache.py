"""A least-recently-used cache bounded by entries and by bytes.

The in-process caches (the projector's read models, the services' aggregates, encoded reads)
were bounded by entries only: a hundred thousand workflows of a few kilobytes is fine, a hundred
thousand with 64 KB configs is gigabytes. Each entry is now charged its encoded size (the caller
knows it: the stored row, the events folded, the encoded body), and the oldest entries go once
either bound is passed.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


#: Bytes charged per JSON value on top of its encoding: a value decoded into Python is an object
#: of its own (a 10 KB config of a thousand keys takes over 100 KB as a dict).
PER_VALUE = 32


def charge(encoded: bytes) -> int:
    """About what the Python objects decoded from `encoded` JSON take, in bytes.

    Counting separators is a fast C loop; a value's Python object costs tens of bytes however
    short its JSON, so a budget of plain encoded bytes would let key-heavy data take ten times
    the memory meant.
    """
    return len(encoded) + PER_VALUE * (encoded.count(b",") + encoded.count(b":"))


class SizedCache(Generic[K, V]):
    """At most `max_entries` entries and `max_bytes` bytes (as charged by `put`)."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value for `key` (without making it recent), or `default`."""
        entry = self._entries.get(key)
        return default if entry is None else entry[0]

    def size_of(self, key: K) -> int:
        """The bytes `key` was charged, 0 if absent."""
        entry = self._entries.get(key)
        return 0 if entry is None else entry[1]

    def put(self, key: K, value: V, size: int) -> None:
        """Store `value` as the most recent entry, charged `size` bytes; evict the oldest past
        either bound (the new entry too, if it alone is over the byte budget)."""
        self.bytes -= self.size_of(key)
        self._entries[key] = (value, size)
        self._entries.move_to_end(key)
        self.bytes += size
        while self._entries and (
            len(self._entries) > self.max_entries or self.bytes > self.max_bytes
        ):
            _, (_, evicted) = self._entries.popitem(last=False)
            self.bytes -= evicted

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self.bytes = 0

    def discard(self, key: K) -> None:
        """Forget `key` if it is held."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry[1]


class CacheBudget:
    """How CACHE_MEMORY_MB is shared among the caches of one server (bytes each)."""

    def __init__(self, megabytes: int) -> None:
        total = megabytes * 1024 * 1024
        #: The read models the projector keeps (every read of a workflow or task goes there).
        self.read_models = total * 40 // 100
        #: Workflows the command service knows (a command costs one append, no read).
        self.workflows = total * 25 // 100
        #: Standalone tasks the command service knows.
        self.tasks = total * 10 // 100
        #: Encoded bodies of recent GET /workflow reads.
        self.encoded_reads = total - self.read_models - self.workflows - self.tasks
