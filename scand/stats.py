"""Request counters and latency percentiles for ``STATS``."""

from __future__ import annotations

import bisect
import collections
import time
from typing import Any

from scand.events import Verdict, verdict_label

# Percentiles are computed over this many most recent requests: enough for a
# stable p99, small enough that STATS stays cheap under a flood.
LATENCY_WINDOW = 4096
# Latency histogram bucket bounds in seconds (cumulative, Prometheus-style): from a
# cache hit (well under a millisecond) up to the default scan_timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)


class Stats:
    """Counts every request by verdict and keeps a window of recent latencies."""

    def __init__(self) -> None:
        self.started = time.time()
        self.requests = 0
        self.commands = 0
        self.bytes = 0
        self.verdicts: collections.Counter[str] = collections.Counter()
        self._latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        # Whole-life latency histogram (non-cumulative counts per bucket; last = +Inf).
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.cache_hits = 0
        self.cache_misses = 0
        self.cache_bad_tags = 0  # shared entries whose tag did not verify (also misses)

    def record(self, verdict: Verdict, seconds: float, nbytes: int,
               cache: tuple[int, ...] = (0, 0, 0)) -> None:
        """Count one request; ``cache`` is its (hits, misses, bad tags) in the verdict
        cache."""
        self.requests += 1
        self.bytes += nbytes
        self.verdicts[verdict_label(verdict)] += 1
        self._latencies.append(seconds)
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.cache_hits += cache[0]
        self.cache_misses += cache[1]
        self.cache_bad_tags += cache[2] if len(cache) > 2 else 0

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
            "cache": {"hits": self.cache_hits, "misses": self.cache_misses,
                      "bad_tags": self.cache_bad_tags},
        }
