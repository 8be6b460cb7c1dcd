"""The Prometheus endpoint: parsed by prometheus_client's own parser, figures moving
under load, the allow-list, and a real Prometheus (Debian's) scraping it."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scand.metrics.http import parse_request, peer_allowed
from scand.metrics.memory import parse_private
from tests.conftest import EICAR, ROOT, Daemon, DaemonFactory


def metrics_port(daemon: Daemon, limit: float = 10.0) -> int:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for line in daemon.log().splitlines():
            if '"metrics_ready"' in line:
                return int(json.loads(line)["listen"].rpartition(":")[2])
        time.sleep(0.05)
    raise AssertionError(f"no metrics_ready line:\n{daemon.log()}")


def scrape(port: int) -> dict[str, float]:
    """Every sample as 'name{labels}' -> value, parsed by prometheus_client."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


def pick(samples: dict[str, float], prefix: str) -> dict[str, float]:
    return {k: v for k, v in samples.items() if k.startswith(prefix)}


# -- pure parts ---------------------------------------------------------------------------


def test_parse_request() -> None:
    assert parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") == (200, "OK")
    assert parse_request(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n") == (200, "OK")
    assert parse_request(b"POST /metrics HTTP/1.1\r\n\r\n")[0] == 405
    assert parse_request(b"GET /etc/passwd HTTP/1.1\r\n\r\n")[0] == 404
    assert parse_request(b"garbage")[0] == 400
    assert parse_request(b"")[0] == 400


def test_peer_allowed() -> None:
    import ipaddress
    loop = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    assert peer_allowed(("127.0.0.1", 5000), loop)
    assert peer_allowed(("::1", 5000, 0, 0), loop)
    assert peer_allowed(("::ffff:127.0.0.2", 5000, 0, 0), loop)
    assert not peer_allowed(("10.1.2.3", 5000), loop)
    assert not peer_allowed("/unix/path", loop)


def test_parse_private() -> None:
    text = ("00400000-7ffd [rollup]\nRss:  2000 kB\nPss:  900 kB\n"
            "Private_Clean:  100 kB\nPrivate_Dirty:  300 kB\nShared_Clean: 5 kB\n")
    assert parse_private(text) == 400 * 1024


# -- live daemon ----------------------------------------------------------------------------


def _load(daemon: Daemon, targets: list[bytes], n: int, clients: int = 4) -> list[bytes]:
    replies: list[bytes] = []
    lock = threading.Lock()

    def run(offset: int) -> None:
        c = daemon.client(timeout=30)
        try:
            for i in range(n):
                r = c.ask(targets[(offset + i) % len(targets)])
                with lock:
                    replies.append(r)
        finally:
            c.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return replies


def test_scrape_figures_move_under_load(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    clean = short_tmp / "clean.txt"
    clean.write_bytes(b"hello\n" * 300)
    bad = short_tmp / "eicar.com"
    bad.write_bytes(EICAR + b"\n" * 2000)
    d = scand_daemon("--metrics", "127.0.0.1:0")
    port = metrics_port(d)
    before = scrape(port)
    info = "scand_engine_info{cache=memory,engine=builtin,signatures=sigs=1,version=0.1.0}"
    assert before[info] == 1
    assert before["scand_request_duration_seconds_count{}"] == 0
    workers = pick(before, "scand_worker_private_bytes{")
    assert len(workers) == 2 and all(v > 0 for v in workers.values())
    pids = {int(k.split("pid=")[1].split(",")[0].rstrip("}")) for k in workers}
    descendants = {c.pid for c in psutil.Process(d.proc.pid).children(recursive=True)}
    assert pids <= descendants

    targets = [f"{clean}\n".encode(), f"{bad}\n".encode(), b"/nonexistent/x\n"]
    during: list[float] = []
    stop = threading.Event()

    def scraper() -> None:  # scrapes while the daemon is under load: never stalls it
        while not stop.is_set():
            during.append(scrape(port)["scand_request_duration_seconds_count{}"])

    t = threading.Thread(target=scraper)
    t.start()
    try:
        replies = _load(d, targets, 30)
    finally:
        stop.set()
        t.join(30)
    assert len(replies) == 120
    assert len(during) >= 2 and during == sorted(during)  # counts only grow
    after = scrape(port)
    assert after["scand_requests_total{reason=,verdict=clean}"] == 40
    assert after["scand_requests_total{reason=,verdict=infected}"] == 40
    assert after["scand_requests_total{reason=not-found,verdict=unchecked}"] == 40
    assert after["scand_request_duration_seconds_count{}"] == 120
    assert after["scand_request_duration_seconds_bucket{le=+Inf}"] == 120
    assert 0 < after["scand_request_duration_seconds_sum{}"] < 120
    assert after["scand_scanned_bytes_total{}"] == 40 * (1800 + len(EICAR) + 2000)
    assert after["scand_worker_jobs_done_total{}"] == 120
    # The same two files over and over: the built-in cache answers all but the first
    # scan of each in each worker (2 workers x 2 files = at most 4 misses).
    assert after["scand_cache_lookups_total{result=miss}"] <= 4
    assert after["scand_cache_lookups_total{result=hit}"] >= 76
    assert after["scand_queue_depth{}"] == 0
    # Every metric the shipped Grafana dashboard queries exists in the exposition.
    dashboard = (ROOT / "examples" / "grafana-dashboard.json").read_text()
    queried = set(re.findall(r"\bscand_[a-z_]+", dashboard)) - {"scand_overview"}
    exposed = {k.split("{")[0] for k in after}
    assert queried and queried <= exposed, queried - exposed


def test_busy_refusals_counted(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    slow = short_tmp / "slow.txt"
    slow.write_bytes(b"SCAND-CHAOS slow 300\nhello\n")
    d = scand_daemon("--engine", "chaos", "--metrics", "127.0.0.1:0", workers=1,
                     config="[pool]\nqueue_size = 0\n")
    port = metrics_port(d)
    replies = _load(d, [f"{slow}\n".encode()], 3, clients=4)
    busy = sum(r.startswith(b"-1:busy") for r in replies)
    assert busy > 0
    after = scrape(port)
    assert after["scand_busy_refusals_total{where=queue}"] == busy
    assert after["scand_requests_total{reason=busy,verdict=unchecked}"] == busy
    assert after["scand_workers{state=idle}"] == 1


def test_peer_outside_allow_list_is_closed_unread(scand_daemon: DaemonFactory) -> None:
    d = scand_daemon("--metrics", "127.0.0.1:0", config='[metrics]\nallow = ["10.0.0.0/8"]\n')
    port = metrics_port(d)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        assert s.recv(100) == b""  # closed without a reply, before we sent anything
    assert '"connection_denied"' in d.log() and '"front": "metrics"' in d.log()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus missing")
def test_real_prometheus_reports_target_up(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    d = scand_daemon("--metrics", "127.0.0.1:0")
    port = metrics_port(d)
    d.ask(b"/nonexistent\n")
    web = _free_port()
    cfg = short_tmp / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: scand\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{port}']\n")
    log = open(short_tmp / "prometheus.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={short_tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{web}"], stdout=log, stderr=log)
    try:
        def query(q: str) -> list[dict[str, object]]:
            url = f"http://127.0.0.1:{web}/api/v1/query?" + urllib.parse.urlencode({"query": q})
            with urllib.request.urlopen(url, timeout=5) as resp:
                data = json.load(resp)
            assert data["status"] == "success"
            result: list[dict[str, object]] = data["data"]["result"]
            return result

        deadline = time.monotonic() + 60
        up: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            try:
                up = query('up{job="scand"}')
                if up and up[0]["value"][1] == "1":  # type: ignore[index]
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert up and up[0]["value"][1] == "1", (up, (short_tmp / "prometheus.log").read_text())  # type: ignore[index]
        seen = query('scand_requests_total{reason="not-found"}')
        assert seen and seen[0]["value"][1] == "1"  # type: ignore[index]
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
