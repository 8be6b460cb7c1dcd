"""RSS of every process under test, every 250 ms, to CSV.

For scand the process set is found afresh on every tick: the daemon (the pid
the harness started, or the listener's pid from SO_PEERCRED), the worker pids
and the managed clamd's pid from ``STATS``, and every descendant psutil finds
under the daemon (the zygote, a warm replacement not yet in service, a worker
being retired). For the clamd baseline it is clamd alone.

``rss.csv`` has one row per process per tick: ``t_s,role,pid,rss_mib``.
CPU seconds per process are kept too (first and last sight), so the report can
say where the machine's time went, the harness's own share included.
Recycle counts from ``STATS`` are kept per tick too, for the plot and the report.
"""

from __future__ import annotations

import csv
import json
import resource
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.targets import ask_line

MiB = 1024 * 1024


@dataclass
class Tick:
    t: float
    rss: dict[int, tuple[str, float]]  # pid -> (role, MiB)
    recycles: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(mib for _, mib in self.rss.values())


def probe(pid: int) -> tuple[float, float] | None:
    """(RSS in MiB, user+system CPU seconds so far) of one process, or None if it is gone."""
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            times = p.cpu_times()
            return p.memory_info().rss / MiB, times.user + times.system
    except psutil.Error:
        return None


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


STATS_EVERY = 8  # ticks (2 s at the default 250 ms)


class Sampler(threading.Thread):
    def __init__(self, csv_path: Path, t0: float, interval: float = 0.25, *,
                 scand_socket: str | None = None, daemon_pid: int | None = None,
                 clamd_pid: int | None = None) -> None:
        super().__init__(name="sampler", daemon=True)
        self.csv_path = csv_path
        self.t0 = t0
        self.interval = interval
        self.scand_socket = scand_socket
        self.daemon_pid = daemon_pid
        self.clamd_pid = clamd_pid
        self.ticks: list[Tick] = []
        self.first_stats: dict[str, Any] | None = None
        self.last_stats: dict[str, Any] | None = None
        # pid -> [role, CPU seconds at first sight, CPU seconds at last sight]
        self.cpu: dict[int, list[Any]] = {}
        self.own_cpu_start = own_cpu()
        self.own_cpu_end = self.own_cpu_start
        self._halt = threading.Event()
        self._ticks = 0

    def stats(self) -> dict[str, Any] | None:
        if self.scand_socket is None:
            return None
        try:
            data: dict[str, Any] = json.loads(ask_line(self.scand_socket, b"STATS\n", 5.0))
        except Exception:  # a busy or restarting daemon: skip this tick
            return None
        return data

    def roles(self, stats: dict[str, Any] | None) -> dict[int, str]:
        out: dict[int, str] = {}
        if self.daemon_pid is not None:
            out[self.daemon_pid] = "daemon"
            try:
                for child in psutil.Process(self.daemon_pid).children(recursive=True):
                    if "clamd" in child.name():  # a managed clamd being switched out
                        out[child.pid] = "clamd"
                    else:
                        direct = child.ppid() == self.daemon_pid
                        out[child.pid] = "zygote" if direct else "worker"
            except psutil.Error:
                pass
        if stats is not None:
            for w in stats.get("pool", {}).get("workers", []):
                out[int(w["pid"])] = "worker"
            clamd = stats.get("clamd") or {}
            if clamd.get("pid"):
                out[int(clamd["pid"])] = "clamd"
        if self.clamd_pid is not None:
            out[self.clamd_pid] = "clamd"
        return out

    def sample(self) -> Tick:
        # STATS costs the daemon CPU (it reads each worker's smaps_rollup now and
        # then): asked every STATS_EVERY ticks, not every tick, so the daemon's CPU
        # per message is the requests', not the sampler's. Pids come from psutil.
        self._ticks += 1
        stats = self.stats() if self._ticks % STATS_EVERY == 1 else None
        if stats is not None:
            if self.first_stats is None:
                self.first_stats = stats
            self.last_stats = stats
        tick = Tick(time.monotonic() - self.t0, {})
        for pid, role in self.roles(stats).items():
            seen = probe(pid)
            if seen is not None:
                tick.rss[pid] = (role, seen[0])
                self.cpu.setdefault(pid, [role, seen[1], seen[1]])[2] = seen[1]
        if stats is not None:
            tick.recycles = sum(stats.get("pool", {}).get("recycles", {}).values())
            tick.stats = {"requests": stats.get("requests"),
                          "queue": stats.get("pool", {}).get("queue")}
        elif self.ticks:  # between two STATS: the last count holds
            tick.recycles = self.ticks[-1].recycles
        return tick

    def run(self) -> None:
        with open(self.csv_path, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["t_s", "role", "pid", "rss_mib"])
            next_at = time.monotonic()
            while not self._halt.is_set():
                tick = self.sample()
                self.ticks.append(tick)
                for pid, (role, mib) in sorted(tick.rss.items()):
                    out.writerow([f"{tick.t:.3f}", role, pid, f"{mib:.2f}"])
                f.flush()
                next_at += self.interval
                self._halt.wait(max(0.0, next_at - time.monotonic()))

    def finish(self) -> None:
        self._halt.set()
        self.join(10)
        self.own_cpu_end = own_cpu()
        final = self.stats()  # the counters after the last reply
        if final is not None:
            self.last_stats = final

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds used during the run by each role, and by this harness ("bomber")."""
        out: dict[str, float] = {"bomber": round(self.own_cpu_end - self.own_cpu_start, 2)}
        for role, first, last in self.cpu.values():
            out[role] = round(out.get(role, 0.0) + last - first, 2)
        return out
