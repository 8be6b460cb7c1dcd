"""The embedded store: an in-memory LRU with a TTL, one per worker.

Per worker rather than shared: workers are separate processes (a crash or a
leak costs one of them), and a shared in-memory table would need shared
memory and locking across processes that may be killed mid-write. Per worker
the cost is that each worker scans each distinct part once: with N workers a
worm attachment is scanned at most N times per generation, then never again.
For a cache shared by every worker and every host, use Redis.
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
