"""The SMTP mail bomber: N concurrent SMTP senders with the bench corpus against an MTA.

    python -m bench.smtp_bomber --exim --repeat 3          # real Exim: sophie vs no scan
    python -m bench.smtp_bomber --host 127.0.0.1 --port 25 # any MTA you point it at

Every message of the corpus (``bench/corpus.py``: 92% clean, 5% infected, 3%
banned, 2 KB-10 MB) is sent once over SMTP by one of N sender threads (each
keeps its connection). Each is counted through to the end: ``accepted`` (250),
``rejected`` (5xx) or, after 4xx replies retried up to ``--retries`` times,
``deferred``; and with ``--exim`` the accepted ones are then counted again in
Exim's Maildir once its queue is empty. A *miss* is a clean message refused,
or an infected or banned one accepted while scanning was on (what each message
is owed: bench/verdicts.py, profile mail+policy).

With ``--exim`` it runs, alternating, a real Exim daemon (bench/exim.py) with
``av_scanner = sophie:<scand socket>`` in its DATA ACL and the same Exim with
no scanning; each run starts Exim (and scand) fresh and stops them by pid, so
their CPU is what wait4 reports for each process group: MTA (the Exim daemon
and every receiver and delivery it reaped), scand (daemon, zygote, workers)
and the senders (this process). RSS is sampled every 250 ms (psutil).
Reports, per mode, the median of ``--repeat`` runs, and the ratios
scanning / no scanning. Needs root (Exim keeps its privileges with ``-C``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench import corpus, exim
from bench.client_startup import wait_for_ping
from bench.verdicts import PROFILES, owed

ROOT = Path(__file__).resolve().parent.parent
SENDER, RECIPIENT = "bomber@example.org", "inbox@scand.test"
# What scand's built-in engine owes each message: it decodes MIME, zip and uuencode and
# applies the attachment policy (bench/verdicts.py). "blind" messages may go either way.
PROFILE = PROFILES["mail+policy"]


class Tally:
    """What became of every message, and any that the MTA got wrong."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = {"accepted": 0, "rejected": 0, "deferred": 0, "error": 0}
        self.misses: list[str] = []

    def add(self, outcome: str, cls: str, scanning: bool, path: str) -> None:
        with self.lock:
            self.counts[outcome] += 1
            wrong = (outcome == "rejected" and cls == "clean") or (
                scanning and outcome == "accepted" and cls in ("infected", "banned"))
            if wrong:
                self.misses.append(f"{path} ({cls}) {outcome}")


def send_all(host: str, port: int, items: list[dict[str, Any]], base: Path, senders: int,
             retries: int, scanning: bool) -> Tally:
    tally = Tally()
    todo = list(enumerate(items))
    lock = threading.Lock()

    def worker() -> None:
        conn: smtplib.SMTP | None = None
        while True:
            with lock:
                if not todo:
                    break
                _, item = todo.pop()
            data = (base / item["path"]).read_bytes()
            outcome = "deferred"
            for attempt in range(retries + 1):
                try:
                    if conn is None:
                        conn = smtplib.SMTP(host, port, timeout=300)
                    conn.sendmail(SENDER, [RECIPIENT], data)
                    outcome = "accepted"
                    break
                except smtplib.SMTPDataError as exc:
                    if 500 <= exc.smtp_code < 600:
                        outcome = "rejected"
                        break
                    time.sleep(min(0.2 * (attempt + 1), 2.0))  # 4xx: the sender retries
                except (smtplib.SMTPException, OSError):
                    conn = None
                    outcome = "error"
                    time.sleep(0.2)
            tally.add(outcome, owed(item, PROFILE).kind, scanning, item["path"])
        if conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                conn.quit()

    threads = [threading.Thread(target=worker) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally


class RssSampler(threading.Thread):
    """Peak summed RSS of each process tree, every 250 ms."""

    def __init__(self, roots: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.peak = dict.fromkeys(roots, 0)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.25):
            for name, pid in self.roots.items():
                try:
                    root = psutil.Process(pid)
                    procs = [root, *root.children(recursive=True)]
                    total = 0
                    for p in procs:
                        with contextlib.suppress(psutil.Error):
                            total += p.memory_info().rss
                    self.peak[name] = max(self.peak[name], total)
                except psutil.Error:
                    pass


def start_scand(work: Path, sigs: Path) -> subprocess.Popen[bytes]:
    sock = work / "scand.sock"
    conf = work / "scand.toml"
    conf.write_text('[server]\nsocket_mode = "0666"\n')  # Exim's receivers run as its user
    log = open(work / "scand.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "scand.cli", "serve", "--socket", str(sock), "--config", str(conf),
         "--engine", "builtin", "--signatures", str(sigs)],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    wait_for_ping(str(sock), proc)
    return proc


def stop_cpu(proc: subprocess.Popen[bytes]) -> float:
    proc.terminate()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def exim_run(mode: str, items: list[dict[str, Any]], base: Path, sigs: Path,
             args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"scand-smtp-{mode}-", dir="/tmp"))
    work.chmod(0o755)
    scand = start_scand(work, sigs) if mode == "sophie" else None
    mta = exim.start(work, f"sophie:{work}/scand.sock" if scand else None)
    roots = {"mta": mta.proc.pid, **({"scand": scand.pid} if scand else {})}
    sampler = RssSampler(roots)
    sampler.start()
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    try:
        tally = send_all("127.0.0.1", mta.port, items, base, args.senders, args.retries,
                         scanning=scand is not None)
        sent = time.monotonic() - t0
        drain = mta.wait_queue_empty(600)
        delivered = len(mta.delivered())
    finally:
        sampler.stopping.set()
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = {"mta": mta.stop(), "scand": stop_cpu(scand) if scand else 0.0,
               "senders": (self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime)}
    n = len(items)
    return {
        "mode": mode, "messages": n, **tally.counts, "delivered": delivered,
        "misses": tally.misses, "accounted": sum(tally.counts.values()) == n
        and delivered == tally.counts["accepted"],
        "send_s": sent, "queue_empty_after_s": sent + drain,
        "msgs_per_s": n / sent, "cpu_s": cpu,
        "cpu_ms_per_msg": {k: v * 1000 / n for k, v in cpu.items()},
        "peak_rss_mib": {k: v / 2**20 for k, v in sampler.peak.items()},
        "work": str(work),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exim", action="store_true", help="start real Exim: sophie vs none")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="an MTA that is already running")
    parser.add_argument("--count", type=int, default=1000, help="messages (default 1000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--senders", type=int, default=16, help="concurrent SMTP senders")
    parser.add_argument("--retries", type=int, default=5, help="retries after a 4xx")
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs per mode")
    parser.add_argument("--corpus", default=str(ROOT / "bench" / "out" / "corpus"))
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    base = Path(args.corpus)
    manifest = corpus.load_or_generate(base, args.count, args.seed)
    items = manifest["messages"]
    if not args.exim:
        if args.port is None:
            parser.error("--port (an MTA to point at) or --exim")
        t0 = time.monotonic()
        tally = send_all(args.host, args.port, items, base, args.senders, args.retries, True)
        print(json.dumps({**tally.counts, "misses": tally.misses,
                          "msgs_per_s": len(items) / (time.monotonic() - t0)}, indent=1))
        return 1 if tally.misses else 0
    sigs = corpus.write_signatures(base.parent / "corpus-sigs")
    runs: list[dict[str, Any]] = []
    for _ in range(args.repeat):
        for mode in ("sophie", "none"):
            runs.append(exim_run(mode, items, base, sigs, args))
            r = runs[-1]
            ms = r["cpu_ms_per_msg"]
            print(f"{mode:6s} {r['msgs_per_s']:7.1f} msgs/s  accepted {r['accepted']} "
                  f"rejected {r['rejected']} deferred {r['deferred']} error {r['error']} "
                  f"delivered {r['delivered']}  queue empty after {r['queue_empty_after_s']:.1f}s "
                  f" cpu ms/msg {json.dumps({k: round(v, 2) for k, v in ms.items()})}"
                  f"  misses {len(r['misses'])}", flush=True)
    summary: dict[str, Any] = {"runs": runs}
    for mode in ("sophie", "none"):
        mine = [r for r in runs if r["mode"] == mode]
        summary[mode] = {
            "msgs_per_s": statistics.median(r["msgs_per_s"] for r in mine),
            "queue_empty_after_s": statistics.median(r["queue_empty_after_s"] for r in mine),
            "cpu_ms_per_msg_total": statistics.median(
                sum(r["cpu_ms_per_msg"].values()) for r in mine),
            "cpu_ms_per_msg_mta": statistics.median(r["cpu_ms_per_msg"]["mta"] for r in mine),
        }
    s, n = summary["sophie"], summary["none"]
    summary["ratio_sophie_to_none"] = {
        "msgs_per_s": s["msgs_per_s"] / n["msgs_per_s"],
        "cpu_ms_per_msg_total": s["cpu_ms_per_msg_total"] / n["cpu_ms_per_msg_total"],
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    bad = any(r["misses"] or not r["accounted"] for r in runs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
