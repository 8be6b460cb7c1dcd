"""Issue 2/7 acceptance: the worker pool, against the real daemon with the chaos engine.

The pool's logic in detail (grace, min_lifetime, backoff, reload) is tested in-process
with fake workers and a fake clock (tests/inproc/test_pool.py); here the real processes."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import EICAR, Daemon, DaemonFactory

MiB = 1024 * 1024


def chaos_file(d: Path, name: str, first_line: str, rest: bytes = b"") -> str:
    p = d / name
    p.write_bytes(first_line.encode() + b"\n" + rest)
    return str(p)


def pool_stats(d: Daemon) -> dict[str, Any]:
    pool = d.stats()["pool"]
    assert isinstance(pool, dict)
    return pool


def wait_until(cond: Any, limit: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError(f"not within {limit}s")


@pytest.mark.slow
def test_leak_is_recycled_and_bounded(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    cfg = ("[pool]\nrecycle_rss_mb = 20\nhard_rss_mb = 40\nmin_lifetime = 0.0\n"
           "max_jobs = 100000\n")
    d = scand_daemon("--engine", "chaos", config=cfg)
    leak = chaos_file(short_tmp, "leak", "SCAND-CHAOS leak 2")
    baseline = max(w["rss"] for w in pool_stats(d)["workers"])
    # Documented bound: (workers + 1 warm replacement) x (baseline + hard_rss_mb).
    bound = 3 * (baseline + 40 * MiB)
    replies: list[bytes] = []
    samples: list[int] = []
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            samples.append(pool_stats(d)["rss_total"])
            time.sleep(0.05)

    def client(n: int) -> None:
        c = d.client()
        for _ in range(n):
            replies.append(c.ask(f"{leak}\n".encode()))
        c.close()

    threads = [threading.Thread(target=client, args=(150,)) for _ in range(2)]
    sampling = threading.Thread(target=sampler)
    sampling.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stop.set()
    sampling.join()
    assert len(replies) == 300 and set(replies) == {b"0\n"}
    stats = pool_stats(d)
    assert stats["recycles"]["rss"] > 0
    print(f"peak worker RSS {max(samples) / MiB:.0f} MiB, bound {bound / MiB:.0f} MiB, "
          f"rss recycles {stats['recycles']['rss']}")
    assert samples and max(samples) < bound, (max(samples) / MiB, bound / MiB)


def test_memory_cap(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    d = scand_daemon("--engine", "chaos", config="[pool]\nmemory_cap_mb = 512\n")
    daemon_rss = psutil.Process(d.proc.pid).memory_info().rss
    hog = chaos_file(short_tmp, "hog", "SCAND-CHAOS hog 2000")
    clean = chaos_file(short_tmp, "clean", "nothing to see")
    c = d.client()
    t0 = time.monotonic()
    reply = c.ask(f"{hog}\n".encode())
    assert reply.startswith(b"-1:memory") and time.monotonic() - t0 < 5
    assert c.ask(f"{clean}\n".encode()) == b"0\n"
    c.close()
    grown = psutil.Process(d.proc.pid).memory_info().rss - daemon_rss
    assert grown < 20 * MiB
    wait_until(lambda: pool_stats(d)["recycles"]["memory"] == 1, 10)


def test_deadline_kills_and_replaces(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    d = scand_daemon("--engine", "chaos", config="[pool]\nscan_timeout = 2.0\n")
    before = {w["pid"] for w in pool_stats(d)["workers"]}
    hang = chaos_file(short_tmp, "hang", "SCAND-CHAOS hang 60")
    t0 = time.monotonic()
    assert d.ask(f"{hang}\n".encode()) == b"-1:timeout scan over 2s\n"
    assert time.monotonic() - t0 < 3
    wait_until(lambda: len(pool_stats(d)["workers"]) == 2, 10)
    stats = pool_stats(d)
    after = {w["pid"] for w in stats["workers"]}
    assert after - before, "a new worker pid"
    assert stats["recycles"]["timeout"] == 1
    gone = before - after
    assert len(gone) == 1 and not psutil.pid_exists(gone.pop())


@pytest.mark.parametrize("how", ["", " segv"])
def test_crash_costs_one_request(scand_daemon: DaemonFactory, short_tmp: Path, how: str) -> None:
    d = scand_daemon("--engine", "chaos")
    crash = chaos_file(short_tmp, "crash", f"SCAND-CHAOS crash{how}")
    virus = short_tmp / "virus"
    virus.write_bytes(EICAR)
    clean = chaos_file(short_tmp, "clean", "clean text")
    others: list[bytes] = []

    def neighbour() -> None:
        c = d.client()
        for i in range(60):
            target = virus if i % 2 else clean
            others.append(c.ask(f"{target}\n".encode()))
        c.close()

    t = threading.Thread(target=neighbour)
    t.start()
    assert d.ask(f"{crash}\n".encode()) == b"-1:worker-crashed\n"
    t.join(60)
    assert others == [b"0\n", b"1:Eicar-Test-Signature\n"] * 30
    wait_until(lambda: pool_stats(d)["recycles"]["crash"] == 1, 10)


def test_queue_full_is_busy_at_once(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    d = scand_daemon("--engine", "chaos",
                     config="[pool]\nqueue_size = 1\nscan_timeout = 30.0\n")
    hang = chaos_file(short_tmp, "hang", "SCAND-CHAOS hang 20")
    clean = chaos_file(short_tmp, "clean", "clean")
    holders = []
    for _ in range(3):  # two on the workers, one in the queue
        c = d.client(timeout=30)
        c.send(f"{hang}\n".encode())
        holders.append(c)
    wait_until(lambda: pool_stats(d)["queue"] == 1, 5)
    times = []
    for _ in range(3):
        t0 = time.monotonic()
        reply = d.ask(f"{clean}\n".encode())
        times.append(time.monotonic() - t0)
        assert reply.startswith(b"-1:busy")
    assert statistics.median(times) < 0.1, times
    for c in holders:
        c.close()


def test_disconnect_frees_worker(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    d = scand_daemon("--engine", "chaos", config="[pool]\ncancel_grace = 0.5\n")
    hang = chaos_file(short_tmp, "hang", "SCAND-CHAOS hang 60")
    c = d.client()
    c.send(f"{hang}\n".encode())
    wait_until(lambda: pool_stats(d)["busy"] == 1, 5)
    c.close()
    t0 = time.monotonic()
    wait_until(lambda: pool_stats(d)["busy"] == 0, 2.0)
    freed = time.monotonic() - t0
    assert freed < 0.5 + 0.3, freed  # the grace, plus polling slack
    assert pool_stats(d)["recycles"]["cancel"] == 1
    wait_until(lambda: pool_stats(d)["live"] == 2, 10)


def test_max_jobs_recycles_warm(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    """Retirement after max_jobs: the replacement is warm first, so nothing fails."""
    cfg = "[pool]\nmax_jobs = 5\nmax_jobs_jitter = 2\nmin_lifetime = 0.0\n"
    d = scand_daemon("--engine", "chaos", config=cfg)
    clean = chaos_file(short_tmp, "clean", "clean")
    c = d.client()
    replies = []
    for _ in range(60):
        replies.append(c.ask(f"{clean}\n".encode()))
        time.sleep(0.02)  # paced, so each warm replacement can finish (about 60 ms)
    c.close()
    assert set(replies) == {b"0\n"}
    stats = pool_stats(d)
    assert stats["recycles"]["jobs"] >= 3, stats
    assert stats["live"] == 2
