"""The verdict cache through a real redis-server shared by two daemons: hits across
daemons, RELOAD with a new signature, Redis SIGKILLed under load, and a Redis that
never answers (a test double) costing at most the lookup timeout."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from bench.klez import klez, write_signatures
from tests.conftest import Daemon, DaemonFactory, Load
from tests.content.corpus import with_attachment
from tests.farm.conftest import Redis, write_secret


def cache_config(url: str, secret: Path, timeout: float = 0.5, retry: float = 0.2) -> str:
    return (f'[cache]\nbackend = "redis"\nredis_url = "{url}"\nsecret_file = "{secret}"\n'
            f"redis_timeout = {timeout}\nredis_retry = {retry}\n")


def spool(directory: Path, mails: list[bytes]) -> list[str]:
    directory.mkdir(exist_ok=True)
    paths = []
    for i, data in enumerate(mails):
        p = directory / f"m{i}.eml"
        p.write_bytes(data)
        paths.append(str(p))
    return paths


def cache_stats(d: Daemon) -> tuple[int, int]:
    c = d.stats()["cache"]
    assert isinstance(c, dict)
    return int(c["hits"]), int(c["misses"])


def test_two_daemons_share_hits_and_reload_turns_a_cached_zero_infected(
        scand_daemon: DaemonFactory, short_tmp: Path, redis_server: Redis) -> None:
    sigdir = write_signatures(short_tmp / "sigs")
    cfg = cache_config(redis_server.url, write_secret(short_tmp))
    d1 = scand_daemon("--signatures", str(sigdir), config=cfg)
    d2 = scand_daemon("--signatures", str(sigdir), config=cfg)
    mails = klez(40)
    worm = [m for m in mails if m.expect != "0"]
    paths = spool(short_tmp / "spool", [worm[0].data, worm[1].data])
    assert d1.ask(f"{paths[0]}\n".encode()).decode().strip() == worm[0].expect
    # The worm part and its base64 body (scand.cache.encoded); nothing for the raw mail.
    assert cache_stats(d1)[0] == 0 and redis_server.dbsize() == 2
    # Another copy (other headers) of a worm d1 has seen: a hit on d2.
    same = next(m for m in worm[1:] if m.expect == worm[0].expect)
    p = spool(short_tmp / "spool2", [same.data])[0]
    assert d2.ask(f"{p}\n".encode()).decode().strip() == same.expect
    assert cache_stats(d2)[0] >= 1
    finished = [json.loads(line) for line in d2.log().splitlines()
                if '"scan_finished"' in line]
    assert finished[-1]["cache_hits"] >= 1

    # A clean attachment, cached as 0 by both daemons ...
    blob = b"MZ" + b"a tool nobody knew was a worm " * 2000
    clean = spool(short_tmp / "spool3", [with_attachment(f"tool{i}.doc", blob)
                                          for i in range(4)])
    assert d1.ask(f"{clean[0]}\n".encode()) == b"0\n"
    assert d2.ask(f"{clean[1]}\n".encode()) == b"0\n"
    hits = cache_stats(d2)[0]
    assert d2.ask(f"{clean[1]}\n".encode()) == b"0\n" and cache_stats(d2)[0] > hits
    # ... then a signature for it, RELOAD on both: the cached 0 is not used again.
    (sigdir / "new.hdb").write_text(
        f"{hashlib.md5(blob).hexdigest()}:{len(blob)}:Worm.Late.Signature\n")
    for d in (d1, d2):
        before = d.ask(b"VERSION\n")
        assert d.ask(b"RELOAD\n") == b"RELOADING\n"
        deadline = time.monotonic() + 30
        while d.ask(b"VERSION\n") == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert d.ask(b"VERSION\n") != before
    # RELOAD returns before every worker rolled over: ask until only new workers answer.
    time.sleep(1.0)
    assert d2.ask(f"{clean[2]}\n".encode()) == b"1:Worm.Late.Signature\n"
    assert d1.ask(f"{clean[3]}\n".encode()) == b"1:Worm.Late.Signature\n"
    assert d1.ask(f"{clean[0]}\n".encode()) == b"1:Worm.Late.Signature\n"


@pytest.mark.slow
def test_redis_killed_under_load(scand_daemon: DaemonFactory, short_tmp: Path,
                                 redis_server: Redis) -> None:
    sigdir = write_signatures(short_tmp / "sigs")
    d = scand_daemon("--signatures", str(sigdir),
                     config=cache_config(redis_server.url, write_secret(short_tmp)))
    mails = klez(60, seed=7)
    paths = spool(short_tmp / "spool", [m.data for m in mails])
    expect = {p: f"{m.expect}\n".encode() for p, m in zip(paths, mails, strict=True)}
    phases = []
    with Load(d, paths, clients=3) as load:
        time.sleep(2.0)
        phases.append(cache_stats(d))
        redis_server.stop(kill=True)  # SIGKILL, by pid
        time.sleep(2.0)
        phases.append(cache_stats(d))
        redis_server.start()
        time.sleep(3.0)
        phases.append(cache_stats(d))
    wrong = [(t, r) for _, t, r in load.replies if r != expect[t]]
    assert len(load.replies) > 100
    assert wrong == []  # zero wrong verdicts, zero -1:
    assert phases[0][0] > 0  # hits before the kill
    assert phases[2][0] > phases[1][0]  # hits resumed once Redis was back
    assert redis_server.dbsize() > 0
    assert '"cache_unavailable"' in d.log()


class SilentRedis:
    """A test double: accepts, reads, never answers (a Redis stuck on a slow disk)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen(16)
        self.conns: list[socket.socket] = []
        self.accepted = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)  # held open, never answered

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def test_silent_redis_costs_at_most_the_lookup_timeout(
        scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    double = SilentRedis(str(short_tmp / "slow.sock"))
    try:
        sigdir = write_signatures(short_tmp / "sigs")
        timeout = 0.4
        d = scand_daemon("--signatures", str(sigdir), workers=1,
                         config=cache_config(f"unix://{short_tmp}/slow.sock",
                                            write_secret(short_tmp), timeout, 30.0))
        mails = klez(5, seed=3)
        paths = spool(short_tmp / "spool", [m.data for m in mails])
        times = []
        for p, m in zip(paths, mails, strict=True):
            t0 = time.monotonic()
            assert d.ask(f"{p}\n".encode()).decode().strip() == m.expect
            times.append(time.monotonic() - t0)
        # The first request waited for the double once (then Redis is left alone for
        # redis_retry); the others did not wait at all.
        assert double.accepted == 1
        assert timeout <= times[0] <= min(times[1:]) + timeout + 0.5, times
        assert max(times[1:]) < timeout, times
    finally:
        double.close()


def test_a_store_waits_for_no_reply(redis_server: Redis) -> None:
    """A store is sent at once and its reply read with the next lookup's (or by flush):
    one round trip a part. A refused store shows as a failure, never as an answer."""
    from scand.cache.redis_store import RedisStore, StoreUnavailable

    store = RedisStore(redis_server.url, 0.5, 0.2, 3600)
    store.put("scand-test:a", b"0")
    store.put("scand-test:b", b"1:Worm")
    assert store._unread == 2
    assert store.get("scand-test:b") == b"1:Worm"  # both OKs read, then the value
    assert store._unread == 0 and redis_server.dbsize() == 2
    assert store.get("scand-test:none") is None
    store.put("scand-test:c", b"0")
    store.flush()
    assert store._unread == 0 and redis_server.dbsize() == 3
    assert redis_server.command(b"TTL", b"scand-test:c").strip(b":\r\n").isdigit()
    # Redis refuses a store (out of memory): the next call fails, the connection is
    # dropped, and no lookup is answered from a connection out of step.
    redis_server.command(b"CONFIG", b"SET", b"maxmemory", b"1")
    redis_server.command(b"CONFIG", b"SET", b"maxmemory-policy", b"noeviction")
    store.put("scand-test:d", b"0")  # OOM: refused
    with pytest.raises(StoreUnavailable):
        store.get("scand-test:a")
    assert store._unread == 0 and store.failures == 1
