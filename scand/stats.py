"""Request counters and latency percentiles for ``STATS``."""

from __future__ import annotations

import collections
import time
from typing import Any

from scand.events import Verdict, verdict_label

# Percentiles are computed over this many most recent requests: enough for a
# stable p99, small enough that STATS stays cheap under a flood.
LATENCY_WINDOW = 4096


class Stats:
    """Counts every request by verdict and keeps a window of recent latencies."""

    def __init__(self) -> None:
        self.started = time.time()
        self.requests = 0
        self.commands = 0
        self.bytes = 0
        self.verdicts: collections.Counter[str] = collections.Counter()
        self._latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)

    def record(self, verdict: Verdict, seconds: float, nbytes: int) -> None:
        self.requests += 1
        self.bytes += nbytes
        self.verdicts[verdict_label(verdict)] += 1
        self._latencies.append(seconds)

    def percentiles(self) -> dict[str, float]:
        """p50/p90/p99/max latency in milliseconds over the recent window."""
        if not self._latencies:
            return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
        ordered = sorted(self._latencies)

        def pick(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

        return {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": pick(1.0)}

    def snapshot(self) -> dict[str, Any]:
        return {
            "uptime": round(time.time() - self.started, 1),
            "requests": self.requests,
            "commands": self.commands,
            "bytes": self.bytes,
            "verdicts": dict(self.verdicts),
            "latency_ms": self.percentiles(),
        }
