"""HAProxy reads scand's agent: weights fall as a host's queue fills, and a draining
host (SIGTERM with farm.drain_delay) gets no new connection while every request
through HAProxy is answered. Real HAProxy, two scand daemons (chaos engine, one
worker each: ``SCAND-CHAOS slow <ms>`` holds a worker)."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import EICAR
from tests.farm.farmprocs import HAProxy, haproxy_config
from tests.farm.farmutil import exchange, free_port, stream_request
from tests.farm.scandfarm import Host, make_hosts, start_host

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None,
                                reason="haproxy (Debian package) is not installed")


@pytest.fixture
def farm(short_tmp: Path) -> Iterator[tuple[HAProxy, list[Host], int]]:
    hosts = make_hosts(2, extra="[pool]\nqueue_size = 16\nqueue_wait = 30.0\n")
    for h in hosts:
        start_host(short_tmp, h, "--engine", "chaos")
    front = free_port()
    hap = HAProxy(short_tmp, haproxy_config(front, free_port(), [h.ports() for h in hosts],
                                            inter="200ms"))
    try:
        yield hap, hosts, front
    finally:
        hap.stop()
        for h in hosts:
            if h.daemon is not None:
                h.daemon.stop()


def wait_for(predicate: object, limit: float = 10.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def weights(hap: HAProxy) -> dict[str, int]:
    return {name: int(row["weight"]) for name, row in hap.servers("sophie").items()}


def draining(hap: HAProxy, server: str) -> bool:
    row = hap.servers("sophie")[server]
    return row["status"].startswith("DRAIN") or row["weight"] == "0"  # "DRAIN (agent)"


def test_weight_follows_the_queue_and_a_draining_host_gets_nothing_new(
        farm: tuple[HAProxy, list[HAProxy], int]) -> None:
    hap, hosts, front = farm
    s1, s2 = hosts
    assert wait_for(lambda: all(r["status"] == "UP" for r in hap.servers("sophie").values())), (
        hap.servers("sophie"), (hap.dir / "haproxy.log").read_text()[-2000:],
        s1.daemon and s1.daemon.log()[-3000:])
    assert wait_for(lambda: weights(hap) == {"s1": 100, "s2": 100}), weights(hap)

    # Four slow scans sent to s1 directly (from 127.0.0.2, not the balancer): one runs,
    # three wait in its queue, so its agent says 100 / (1 + 4) = 20%.
    slow = stream_request(b"SCAND-CHAOS slow 3000\nbody\n")
    replies: list[bytes] = []
    threads = [threading.Thread(target=lambda: replies.append(
        exchange(s1.sophie, slow, source="127.0.0.2", timeout=30))) for _ in range(4)]
    for t in threads:
        t.start()
    seen: list[dict[str, int]] = []
    assert wait_for(lambda: seen.append(weights(hap)) or seen[-1]["s1"] <= 25), seen[-5:]
    loaded = seen[-1]
    assert loaded["s2"] == 100
    for t in threads:
        t.join(30)
    assert replies == [b"0\n"] * 4
    assert wait_for(lambda: weights(hap)["s1"] == 100)
    print(f"\nweights idle {{s1: 100, s2: 100}} -> s1 with 1 busy + 3 queued {loaded}"
          " -> idle again 100")

    # SIGTERM s2: its agent says drain (weight 0) for drain_delay before it closes.
    assert s2.daemon is not None
    mixed = [stream_request(EICAR if i % 2 else b"clean mail") for i in range(20)]
    assert [exchange(front, m) for m in mixed] == [b"0\n", b"1:Eicar-Test-Signature\n"] * 10
    before = int(hap.servers("sophie")["s2"]["stot"])
    assert before > 0  # leastconn spreads the sequential requests over both
    s2.daemon.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: draining(hap, "s2"), 3.0), {
        k: v for k, v in hap.servers("sophie")["s2"].items() if k in ("status", "weight")}
    drained_at = int(hap.servers("sophie")["s2"]["stot"])
    assert [exchange(front, m) for m in mixed] == [b"0\n", b"1:Eicar-Test-Signature\n"] * 10
    assert int(hap.servers("sophie")["s2"]["stot"]) == drained_at, "a draining host got one"
    assert s2.daemon.proc.wait(15) == 0
    print(f"s2 sessions: {before} before SIGTERM, {drained_at} when drained, "
          f"{drained_at} after 20 more requests through HAProxy (all to s1)")
