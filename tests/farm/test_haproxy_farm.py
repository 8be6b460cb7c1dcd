"""The farm on real programs, under load: HAProxy in front of three scand daemons
(builtin engine, one worker each), a Redis master with one replica and three
Sentinels behind them as the shared cache. While clients send clean and EICAR mail
through HAProxy (one connection per message): one scand is SIGKILLed and
restarted, another SIGTERMed (it drains) and restarted, HAProxy reloads, and
Sentinel fails the Redis master over.

Counted: every message answered; no clean answer for infected mail; only requests
in flight on the killed host go unanswered; throughput before and after each
event (printed); cache hits resume after the failover."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.farm_load import FarmLoad
from tests.farm.conftest import write_secret
from tests.farm.farmprocs import HAProxy, RedisFarm, haproxy_config
from tests.farm.farmutil import free_port
from tests.farm.scandfarm import Host, make_hosts, start_host

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(any(shutil.which(p) is None for p in
                           ("haproxy", "redis-server", "redis-sentinel")),
                       reason="haproxy, redis-server and redis-sentinel (Debian) are needed"),
]

WINDOW = 2.0  # seconds of throughput compared before and after each event


@pytest.fixture
def farm(short_tmp: Path) -> Iterator[tuple[HAProxy, RedisFarm, list[Host], int]]:
    redis = RedisFarm(short_tmp)
    secret = write_secret(short_tmp)  # one farm secret, shared by the three hosts
    cache = (f'[cache]\nbackend = "redis"\nredis_url = "{redis.url}"\n'
             f'secret_file = "{secret}"\nredis_timeout = 0.25\nredis_retry = 0.5\n')
    hosts = make_hosts(3, cache=cache)
    hap = None
    try:
        for h in hosts:
            start_host(short_tmp, h)
        front = free_port()
        hap = HAProxy(short_tmp, haproxy_config(front, free_port(), [h.ports() for h in hosts]))
        yield hap, redis, hosts, front
    finally:
        if hap is not None:
            hap.stop()
        for h in hosts:
            if h.daemon is not None:
                h.daemon.stop(signal.SIGKILL)
        redis.stop()


def all_up(hap: HAProxy, limit: float = 15.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        rows = hap.servers("sophie")
        if all(r["status"] == "UP" for r in rows.values()):
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(hap.servers("sophie"))


def _steps(t0: float, t1: float, step: float = 0.25) -> list[float]:
    return [t0 + i * step for i in range(max(1, int((t1 - t0) / step)))]


def cache_hits(hosts: list[Host]) -> int:
    total = 0
    for h in hosts:
        assert h.daemon is not None
        stats = h.daemon.stats()["cache"]
        assert isinstance(stats, dict)
        total += int(stats["hits"])
    return total


def test_farm_survives_kill_drain_reload_and_failover(
        farm: tuple[HAProxy, RedisFarm, list[Host], int], short_tmp: Path) -> None:
    hap, redis, hosts, front = farm
    all_up(hap)
    events: list[tuple[str, float, float, str]] = []
    with FarmLoad(front, clients=6) as load:
        time.sleep(3)
        # 1. SIGKILL s1 (its in-flight requests are lost), then start it again.
        s1 = hosts[0]
        assert s1.daemon is not None
        killed_at = time.monotonic()
        s1.daemon.stop(signal.SIGKILL)
        start_host(short_tmp, s1)
        events.append(("SIGKILL s1 + restart", killed_at, time.monotonic(),
                       f"restarted in {time.monotonic() - killed_at:.1f}s, "
                       f"back UP in HAProxy after {all_up(hap):.1f}s more"))
        time.sleep(3)
        # 2. SIGTERM s2: agent says drain for drain_delay, then it closes; restart.
        s2 = hosts[1]
        assert s2.daemon is not None
        t = time.monotonic()
        assert s2.daemon.stop(signal.SIGTERM) == 0
        start_host(short_tmp, s2)
        events.append(("SIGTERM s2 (drain) + restart", t, time.monotonic(),
                       f"exited and restarted in {time.monotonic() - t:.1f}s, "
                       f"UP after {all_up(hap):.1f}s more"))
        time.sleep(3)
        # 3. HAProxy reload: a new process takes the listeners over.
        t = time.monotonic()
        old = hap.procs[-1].proc
        hap.reload()
        events.append(("HAProxy reload (-x -sf)", t, time.monotonic(),
                       f"new pid {hap.pid}, old pid {old.pid}"))
        time.sleep(3)
        # 4. Sentinel fails the Redis master over.
        hits_before = cache_hits(hosts)
        t = time.monotonic()
        took = redis.failover()
        events.append(("Redis SENTINEL FAILOVER", t, time.monotonic(),
                       f"new master named after {took:.1f}s"))
        time.sleep(4)
        hits_after = cache_hits(hosts)
    old.wait(10)  # the old HAProxy left once its connections were done

    replies = load.replies
    lost = [r for r in replies if not r.reply]
    unchecked = [r for r in replies if r.reply.startswith(b"-1:")]
    wrong = [r for r in replies if r.infected and not r.reply.startswith(b"1:")
             and r.reply]
    clean_bad = [r for r in replies if not r.infected and r.reply and r.reply != b"0\n"]
    print(f"\n{len(replies)} messages in {load.ended - load.started:.1f}s through HAProxy, "
          f"{sum(r.infected for r in replies)} infected")
    print(f"  lost (no reply): {len(lost)}, -1: {len(unchecked)}, "
          f"cache hits before failover {hits_before}, after {hits_after}")
    # No infected mail was ever answered clean, and clean mail only 0.
    assert not wrong, wrong[:3]
    assert not clean_bad, clean_bad[:3]
    assert not unchecked, unchecked[:3]
    # Only requests in flight on the killed host went unanswered: each began before
    # the kill and ended at it, at most one per client thread.
    assert len(lost) <= 6, [r.error for r in lost]
    for r in lost:
        assert r.start <= killed_at + 0.1 and r.end >= killed_at - 0.1, (r, killed_at)
    # Throughput before each event, its lowest second while the event ran, and
    # after it (the machine is shared: only a collapse fails the test).
    for name, start, end, detail in events:
        before = load.rate(start - WINDOW, start)
        during = min(load.rate(t, t + 1.0) for t in _steps(start, max(end, start + 1.0)))
        after = load.rate(end + 0.5, end + 0.5 + WINDOW)
        back = next((t - end for t in _steps(end, end + 8.0)
                     if load.rate(t, t + 1.0) >= 0.7 * before), None)
        print(f"  {name:30} {before:5.0f} msg/s before, lowest second {during:5.0f} "
              f"during ({end - start:.1f} s), {after:5.0f} after; 70 % of before again "
              f"{f'after {back:.1f} s' if back is not None else 'not within 8 s'}; {detail}")
        assert after >= 0.25 * before, (name, before, after)
    # Cache hits resumed after the failover (on the new master).
    assert hits_after > hits_before
    assert redis.replica.role() == "master" and redis.replica.dbsize() > 0
