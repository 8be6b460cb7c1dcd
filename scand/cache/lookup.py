"""The verdict cache as the scanner sees it: ``scan(engine.scan_bytes, data, where)``.

Only definitive verdicts are stored: ``0`` and ``1:<name>``, never ``-1:``
(a timeout or a limit says nothing about the bytes). A store that fails costs
a scan, never a wrong answer and never a ``-1:``. The policy (names, types)
is not cached: the scanner checks every part's names on hits as on misses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from scand.cache.keys import content_digest
from scand.events import CLEAN, Clean, Infected, Verdict

# Values: b"0" or b"1:<name>". A name in a reply can hold no space, CR, LF or NUL.
_BAD_NAME = frozenset(" \r\n\0")


class Store(Protocol):
    shared: bool

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...


def encode(verdict: Clean | Infected) -> bytes:
    return b"0" if isinstance(verdict, Clean) else b"1:" + verdict.name.encode()


def decode(value: bytes) -> Clean | Infected | None:
    """A stored value as a verdict; anything malformed is a miss, never a verdict."""
    if value == b"0":
        return CLEAN
    if value.startswith(b"1:") and len(value) > 2:
        name = value[2:].decode("utf-8", "replace")
        if not _BAD_NAME.intersection(name):
            return Infected(name)
    return None


class PartCache:
    """Per-part lookups under one signature generation and policy version."""

    def __init__(self, store: Store | None, prefix: str, generation: str, policy: str,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.enabled = store is not None and bool(generation)
        self.prefix = f"{prefix}{generation}:{policy}:"
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self._on_error = on_error

    def key(self, data: bytes) -> str:
        return self.prefix + content_digest(data)

    def get(self, key: str) -> Clean | Infected | None:
        assert self.store is not None
        try:
            value = self.store.get(key)
        except Exception as exc:  # a store failure costs a scan, never a -1:
            self._error(exc)
            value = None
        verdict = decode(value) if value is not None else None
        if verdict is None:
            self.misses += 1
        else:
            self.hits += 1
        return verdict

    def put(self, key: str, verdict: Verdict) -> None:
        if not isinstance(verdict, Clean | Infected):
            return  # never -1:
        assert self.store is not None
        try:
            self.store.put(key, encode(verdict))
        except Exception as exc:
            self._error(exc)

    def scan(self, scan: Callable[[bytes, str], Verdict], data: bytes, where: str) -> Verdict:
        """The cached verdict for these bytes, or ``scan(data, where)`` (then stored)."""
        if not self.enabled:
            return scan(data, where)
        key = self.key(data)
        cached = self.get(key)
        if cached is not None:
            return cached
        verdict = scan(data, where)
        self.put(key, verdict)
        return verdict

    def take_counts(self) -> tuple[int, int]:
        """(hits, misses) since the last call: one job's figures."""
        counts = (self.hits, self.misses)
        self.hits = self.misses = 0
        return counts

    def _error(self, exc: Exception) -> None:
        self.errors += 1
        if self._on_error is not None and "resting after" not in str(exc):
            self._on_error(str(exc))
