"""The embedded store of a stand-alone worker: an in-memory LRU with a TTL.

Workers the zygote forks share one table instead (:mod:`scand.cache.shared`);
this one serves a worker run on its own (``python -m scand.worker.child``) and
tests. For a cache shared by every host, use Redis.
"""

from __future__ import annotations

import collections
import time


class MemoryStore:
    """``get``/``put`` of small byte values with a TTL and a bound on entries."""

    shared = False

    def __init__(self, max_entries: int, ttl: float) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self._data: collections.OrderedDict[str, tuple[float, bytes]] = (
            collections.OrderedDict())

    def get(self, key: str) -> bytes | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= time.monotonic():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: str, value: bytes) -> None:
        self._data[key] = (time.monotonic() + self.ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
