"""What the pool reports: STATS' ``pool`` section and the metrics' worker figures.

Each worker's memory is read from its ``smaps_rollup`` (private memory, PSS and
RSS: RSS counts the signature set every worker shares with the zygote once per
worker), at most every :data:`USAGE_MAX_AGE` seconds per worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from scand.worker import memory

if TYPE_CHECKING:
    from scand.pool.pool import Pool

RECYCLE_REASONS = ("rss", "jobs", "memory", "timeout", "crash", "cancel", "reload")
# STATS reads each worker's smaps_rollup at most this often (seconds). Reading it
# walks the worker's page tables: with STATS 4 times a second (the bomber's
# sampler) and a 2 s refresh, a STATS cost the daemon 2.25 ms of CPU (4 clamav
# workers), 0.4-0.8 ms per scanned message at 11-25 msgs/s. PSS moves slowly.
USAGE_MAX_AGE = 10.0


class WorkerUsage:
    """Each live worker's memory, read again once it is older than USAGE_MAX_AGE."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[float, memory.Usage]] = {}

    def __call__(self, pid: int) -> memory.Usage:
        now = trio.current_time()
        cached = self._cache.get(pid)
        if cached is None or now - cached[0] > USAGE_MAX_AGE:
            cached = (now, memory.usage(pid))
            self._cache[pid] = cached
        return cached[1]

    def keep_only(self, live: set[int]) -> None:
        for pid in [p for p in self._cache if p not in live]:
            del self._cache[pid]


def pool_stats(pool: Pool, usage: WorkerUsage) -> dict[str, Any]:
    """The pool's size, queue, recycles and each worker (pid, memory, jobs, state)."""
    usage.keep_only({w.pid for w in pool.workers})
    workers = []
    for w in pool.workers:
        try:  # private (USS) and PSS: RSS counts the zygote's shared engine per worker
            mem = usage(w.pid)
            rss, pss, private = mem.rss, mem.pss, mem.private
        except OSError:
            rss = pss = private = w.rss
        workers.append({"pid": w.pid, "rss": rss, "pss": pss, "private": private,
                        "jobs": w.jobs, "age": round(w.age, 1),
                        "state": "busy" if w.busy else "idle", "lifecycle": w.state.value,
                        "retiring": w.recycle_reason or None,
                        "generation": w.generation})
    return {
        "size": pool.config.worker_count,
        "live": len(pool.workers),
        "idle": pool.idle_count,
        "busy": sum(1 for w in pool.workers if w.busy),
        "queue": pool.waiting,
        "rss_total": sum(w["rss"] for w in workers),
        "pss_total": sum(w["pss"] for w in workers),
        "private_total": sum(w["private"] for w in workers),
        "jobs_total": pool.jobs_done,
        "spawned_total": pool.spawned,
        "recycles": {r: pool.recycles.get(r, 0) for r in RECYCLE_REASONS},
        "last_spawn_ms": round(pool.last_spawn_ms, 1),
        "workers": workers,
    }
