"""The metrics, read from the service's live counters at scrape time.

Nothing is counted twice: requests, latency and cache figures come from
:class:`scand.stats.Stats`, queue depth, workers and recycles from the pool,
connection refusals from the server. The request path pays nothing for the
endpoint; a scrape costs one pass over these counters plus one read of
``smaps_rollup`` per worker.

Runs in the trio thread (``generate_latest`` is called from the trio HTTP
handler), so it sees one consistent snapshot and needs no locks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

import scand
from scand.fronts.accept import Counters
from scand.fronts.budget import MemoryBudget
from scand.metrics.memory import private_bytes
from scand.pool.report import RECYCLE_REASONS
from scand.service import Service
from scand.stats import LATENCY_BUCKETS

VERDICTS = ("clean", "infected")


class Counted(Protocol):
    """What the collector reads from each front's listeners (scand.fronts.accept.FrontServer)."""

    @property
    def front(self) -> Named: ...

    @property
    def counters(self) -> Counters: ...

    @property
    def budget(self) -> MemoryBudget | None: ...


class Named(Protocol):
    @property
    def name(self) -> str: ...


CONNECTION_OUTCOMES = ("accepted", "refused_busy", "denied", "faults", "handshake_failures",
                       "accept_errors")


class ScandCollector(Collector):
    """One scand daemon's figures in Prometheus form."""

    def __init__(self, service: Service, servers: Sequence[Counted] | None = None) -> None:
        self.service = service
        self.servers = servers if servers is not None else []

    def collect(self) -> Iterator[Metric]:
        yield from self._requests()
        yield from self._pool()
        yield from self._cache()
        yield from self._versions()

    def _requests(self) -> Iterator[Metric]:
        stats = self.service.stats
        requests = CounterMetricFamily(
            "scand_requests", "Scan requests answered, by verdict and -1: reason",
            labels=["verdict", "reason"])
        for label, count in sorted(stats.verdicts.items()):
            if label in VERDICTS:
                requests.add_metric([label, ""], count)
            else:
                requests.add_metric(["unchecked", label], count)
        yield requests
        latency = HistogramMetricFamily(
            "scand_request_duration_seconds", "Time from request to reply (queue wait included)")
        cumulative, buckets = 0, []
        for bound, count in zip(LATENCY_BUCKETS, stats.latency_counts, strict=False):
            cumulative += count
            buckets.append((repr(bound), float(cumulative)))
        buckets.append(("+Inf", float(cumulative + stats.latency_counts[-1])))
        latency.add_metric([], buckets, stats.latency_sum)
        yield latency
        yield CounterMetricFamily("scand_scanned_bytes", "Bytes scanned", value=stats.bytes)
        yield CounterMetricFamily("scand_commands", "Control lines answered (PING, STATS, ...)",
                                  value=stats.commands)
        busy = CounterMetricFamily(
            "scand_busy_refusals", "Requests refused as -1:busy: full queue or no worker in "
            "time (queue), too many connections (connections)", labels=["where"])
        busy.add_metric(["queue"], stats.verdicts.get("busy", 0))
        busy.add_metric(["connections"], sum(s.counters.refused_busy for s in self.servers))
        yield busy
        yield from self._connections()

    def _connections(self) -> Iterator[Metric]:
        conns = CounterMetricFamily(
            "scand_connections", "Connections by front and outcome: accepted, refused busy, "
            "denied by the allow-list, ended by a fault, failed TLS handshakes, accept errors",
            labels=["front", "outcome"])
        budget = None
        for s in self.servers:
            for outcome in CONNECTION_OUTCOMES:
                conns.add_metric([s.front.name, outcome], getattr(s.counters, outcome))
            budget = budget or s.budget
        yield conns
        if budget is not None:
            gauge = GaugeMetricFamily("scand_memory_budget_bytes",
                                      "Daemon-wide budget for request bytes held in the daemon",
                                      labels=["state"])
            gauge.add_metric(["used"], budget.used)
            gauge.add_metric(["peak"], budget.peak)
            gauge.add_metric(["limit"], budget.limit)
            yield gauge

    def _pool(self) -> Iterator[Metric]:
        pool = self.service.pool
        yield GaugeMetricFamily("scand_queue_depth", "Requests waiting for a worker",
                                value=pool.waiting)
        workers = GaugeMetricFamily("scand_workers", "Worker processes by state",
                                    labels=["state"])
        busy = sum(1 for w in pool.workers if w.busy)
        workers.add_metric(["busy"], busy)
        workers.add_metric(["idle"], len(pool.workers) - busy)
        yield workers
        private = GaugeMetricFamily(
            "scand_worker_private_bytes",
            "Private memory (Private_Clean + Private_Dirty of smaps_rollup) per worker",
            labels=["pid", "generation"])
        jobs = GaugeMetricFamily("scand_worker_jobs", "Jobs done by each live worker",
                                 labels=["pid", "generation"])
        for w in list(pool.workers):
            labels = [str(w.pid), str(w.generation)]
            size = private_bytes(w.pid)
            if size is not None:
                private.add_metric(labels, size)
            jobs.add_metric(labels, w.jobs)
        yield private
        yield jobs
        recycles = CounterMetricFamily("scand_worker_recycles", "Workers replaced, by reason",
                                       labels=["reason"])
        for reason in RECYCLE_REASONS:
            recycles.add_metric([reason], pool.recycles.get(reason, 0))
        yield recycles
        yield CounterMetricFamily("scand_worker_jobs_done", "Jobs done by all workers ever",
                                  value=pool.jobs_done)

    def _cache(self) -> Iterator[Metric]:
        stats = self.service.stats
        lookups = CounterMetricFamily(
            "scand_cache_lookups", "Verdict-cache lookups (one per scanned part)",
            labels=["result"])
        lookups.add_metric(["hit"], stats.cache_hits)
        lookups.add_metric(["miss"], stats.cache_misses)
        yield CounterMetricFamily(
            "scand_cache_bad_tags", "Shared cache entries whose tag did not verify "
            "(forged or tampered with; each was a miss and the part was scanned)",
            value=stats.cache_bad_tags)
        yield lookups

    def _versions(self) -> Iterator[Metric]:
        service = self.service
        info = service.pool.info
        engine = InfoMetricFamily("scand_engine", "Engine, signature set and scand version")
        engine.add_metric([], {
            "version": scand.__version__,
            "engine": info.engine if info else service.config.engine.name,
            "signatures": info.signatures if info else "",
            "cache": service.config.cache.backend,
        })
        yield engine
        yield GaugeMetricFamily("scand_signature_generation",
                                "Signature generation (goes up by one per successful reload)",
                                value=service.pool.generation)
        yield GaugeMetricFamily("scand_start_time_seconds", "When the daemon started (epoch)",
                                value=service.stats.started)


def make_registry(service: Service, servers: Sequence[Counted] | None = None) -> CollectorRegistry:
    """A registry holding only scand's collector (no process or platform defaults)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScandCollector(service, servers))
    return registry
