"""One daemon-wide budget for request bytes held in the daemon, whatever the front.

Each front's own limits cap one request (``server.max_stream_bytes``, a milter
message's spill size, ``limits.max_file_size``); this caps their sum over every
connection of every front: Sophie STREAM bodies, clamd INSTREAM data and
FILDES reads, milter message buffers and macros, and a fixed estimate per
unfinished TLS handshake. A request that does not fit gets its front's busy
answer at once instead of waiting or growing the daemon.

Pure and stdlib-only (the sans-IO parsers take it), and not thread-safe: it
is used from the trio thread only.
"""

from __future__ import annotations

MiB = 1024 * 1024
# What one unfinished TLS handshake costs the daemon (OpenSSL's buffers and
# trio's SSLStream): measured ~43 KiB; rounded up.
TLS_HANDSHAKE_BYTES = 64 * 1024
# clamd_front.stream_memory_mb's default: the old key counts only when changed.
LEGACY_DEFAULT_MB = 512


class MemoryBudget:
    """Bytes the daemon may hold for clients, all fronts together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self.refused = 0  # requests that did not fit

    def try_take(self, n: int) -> bool:
        """Take ``n`` bytes if they fit (False, counted, if not)."""
        if n < 0 or self.used + n > self.limit:
            self.refused += 1
            return False
        self.used += n
        self.peak = max(self.peak, self.used)
        return True

    def give(self, n: int) -> None:
        self.used = max(0, self.used - n)


class Held:
    """What one connection holds from a budget, so its end gives back exactly that."""

    def __init__(self, budget: MemoryBudget | None) -> None:
        self.budget = budget
        self.held = 0

    def take(self, n: int) -> bool:
        if self.budget is None:
            return True
        if not self.budget.try_take(n):
            return False
        self.held += n
        return True

    def try_take(self, n: int) -> bool:
        return self.take(n)

    def give(self, n: int) -> None:
        n = min(n, self.held)
        self.held -= n
        if self.budget is not None:
            self.budget.give(n)

    def resize(self, n: int) -> bool:
        """Hold exactly ``n`` bytes now (a buffer that grew or shrank)."""
        if n <= self.held:
            self.give(self.held - n)
            return True
        return self.take(n - self.held)

    def release(self) -> None:
        self.give(self.held)


def budget_bytes(memory_budget_mb: int, legacy_stream_mb: int, max_stream_bytes: int) -> int:
    """``server.memory_budget_mb``; else a changed ``clamd_front.stream_memory_mb``
    (the old key); else 16 maximum-size streams."""
    if memory_budget_mb > 0:
        return memory_budget_mb * MiB
    if legacy_stream_mb != LEGACY_DEFAULT_MB:
        return legacy_stream_mb * MiB
    return max(64 * MiB, 16 * max_stream_bytes)

