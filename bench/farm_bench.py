"""What the balancer hop costs: the same load straight to one scand host, through
HAProxy to that one host, and through HAProxy to three hosts.

    PYTHONPATH=. python -m bench.farm_bench [--seconds 10] [--clients 6]

Three scand daemons (builtin engine, ``--workers`` each, Sophie over TCP, the
agent, PROXY v2 from 127.0.0.1) and one HAProxy (the tested configuration,
bench.farm_load.haproxy_config) on loopback. Each run sends STREAM requests,
one connection per message, a mix of clean and EICAR mail (bench.farm_load).
Printed per run: messages/s, mean and p99 latency; for the HAProxy runs the
CPU HAProxy spent per request (utime + stime from /proc). On one machine the
three hosts share its CPUs: the three-host figure is no scaling claim, and the
one-host pair (same backend, with and without the hop) is the hop's cost.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.farm_load import FarmLoad, free_port, haproxy_config, wait_port

ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_scand(work: Path, n: int, workers: int) -> tuple[subprocess.Popen[bytes], tuple[
        str, int, int, int]]:
    sophie, clamd, agent = free_port(), free_port(), free_port()
    cfg = work / f"scand{n}.toml"
    cfg.write_text(
        f'[server]\nsocket = "{work}/s{n}"\ntcp = ["127.0.0.1:{sophie}"]\n'
        f'[clamd_front]\ntcp = ["127.0.0.1:{clamd}"]\ntcp_allow = ["127.0.0.0/8"]\n'
        f'[farm]\nproxy_from = ["127.0.0.1/32"]\nagent = "127.0.0.1:{agent}"\n'
        f'[pool]\nworkers = {workers}\n[log]\nlevel = "warning"\n')
    log = open(work / f"scand{n}.log", "wb")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen([sys.executable, "-m", "scand.cli", "serve", "--config", str(cfg)],
                            stdout=log, stderr=log, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc, (f"s{n + 1}", sophie, clamd, agent)


def run(label: str, port: int, seconds: float, clients: int, haproxy: int | None) -> None:
    """One run; direct runs come from 127.0.0.2 (127.0.0.1 is the balancer's address)."""
    cpu0 = cpu_seconds(haproxy) if haproxy else 0.0
    with FarmLoad(port, clients=clients, source=None if haproxy else "127.0.0.2") as load:
        time.sleep(seconds)
    cpu = cpu_seconds(haproxy) - cpu0 if haproxy else 0.0
    replies = load.replies
    bad = sum(1 for r in replies if not r.reply or (r.infected != r.reply.startswith(b"1:")))
    lat = sorted(r.end - r.start for r in replies)
    n = len(lat)
    extra = f", HAProxy CPU {cpu / n * 1e6:.0f} us/request" if haproxy and n else ""
    print(f"{label:28} {n / (load.ended - load.started):7.1f} msgs/s  "
          f"mean {sum(lat) / n * 1000:6.2f} ms  p99 {lat[int(n * 0.99)] * 1000:6.1f} ms  "
          f"({n} messages, {bad} wrong or unanswered{extra})", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--workers", type=int, default=1, help="workers per scand host")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="farm-bench-", dir="/tmp"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        hosts = []
        for n in range(3):
            proc, ports = start_scand(work, n, args.workers)
            procs.append(proc)
            hosts.append(ports)
        for _, sophie, _, agent in hosts:
            wait_port(sophie, 60)
            wait_port(agent, 60)
        haps = {}
        for label, members in (("one", hosts[:1]), ("three", hosts)):
            front = free_port()
            d = work / label
            d.mkdir()
            cfg = d / "haproxy.cfg"
            cfg.write_text(haproxy_config(front, free_port(), members).replace(
                "@STATS@", str(d / "stats.sock")))
            hap = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            procs.append(hap)
            wait_port(front)
            haps[label] = (front, hap.pid)
        time.sleep(1.5)  # every server checked UP
        print(f"{args.clients} clients, one connection per message, {args.workers} worker(s) "
              f"per host, {args.seconds:g} s per run, on {os.cpu_count()} CPUs")
        run("direct to host 1", hosts[0][1], args.seconds, args.clients, None)
        run("HAProxy -> host 1", haps["one"][0], args.seconds, args.clients, haps["one"][1])
        run("HAProxy -> hosts 1-3", haps["three"][0], args.seconds, args.clients,
            haps["three"][1])
        run("direct to host 1, c=1", hosts[0][1], args.seconds / 2, 1, None)
        run("HAProxy -> host 1, c=1", haps["one"][0], args.seconds / 2, 1, haps["one"][1])
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
