"""scand with the in-process ``clamav`` engine against clamd direct (issue 14).

    python -m bench.bench_clamav [--duration 20] [--rounds 3] [--dbs tiny,large]
                                 (also tiny-phish, large-phish: plus a small .pdb)

Same corpus (the bomber's seeded mail corpus), same signature directory, 16
persistent clients, each side driven by :mod:`bench.bomber` against a daemon
started here (scand: ``--engine clamav``, its default of two workers per CPU,
the verdict cache off; clamd: the clamd.conf scand writes for its managed
clamd, same limits, ``DisableCache yes``). Rounds alternate
scand and clamd; the figures are medians of the rounds. ``--engine clamd``
runs scand on its managed clamd instead (scand+clamd against clamd direct).

Two databases: ``tiny`` (the corpus' two signatures) and ``large`` (those plus
500,000 synthetic ``.hdb`` and 50,000 synthetic ``.ndb`` signatures; no
download exists here). For each side: throughput, p99, summed PSS of every
process of that side (daemon, zygote, workers / clamd) sampled every 250 ms,
CPU seconds per message by role; then a reload under load (scand ``RELOAD``;
clamd ``RELOAD`` with clamd's default ``ConcurrentDatabaseReload yes``) and the
peak summed PSS during it.

The machine is shared and has 2 CPUs: treat single runs as noise, the medians
as the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench import bomber, corpus, procs
from bench.procs import Managed, start_scand
from bench.targets import ask_line
from scand.worker.memory import usage

OUT = Path(__file__).resolve().parent / "out"


def large_db(directory: Path, base: Path, hashes: int = 500_000, bodies: int = 50_000) -> Path:
    """``base``'s signatures plus synthetic ones (seeded, cached by count)."""
    stamp = directory / f".made-{hashes}-{bodies}"
    if stamp.exists():
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for f in base.iterdir():
        shutil.copy(f, directory / f.name)
    rng = random.Random(14)
    with open(directory / "synth.hdb", "w") as fh:
        for i in range(hashes):
            fh.write(f"{rng.getrandbits(128):032x}:{rng.randrange(100, 1 << 20)}:Synth.Hash-{i}\n")
    with open(directory / "synth.ndb", "w") as fh:
        for i in range(bodies):  # 16-32 random bytes at any offset, any file type
            fh.write(f"Synth.Body-{i}:0:*:{rng.randbytes(rng.randrange(16, 33)).hex()}\n")
    stamp.touch()
    return directory


# A small phishing list (.pdb, "H:" = links that show this host are checked): enough
# for libclamav to run its phishing check on every text part of a mail.
PHISH_HOSTS = ("paypal.com", "ebay.com", "amazon.com", "apple.com", "microsoft.com",
               "bankofamerica.com", "chase.com", "wellsfargo.com", "hsbc.co.uk", "dhl.com")


def sigdir_for(db: str, tiny: Path) -> Path:
    """The signature directory for ``--dbs`` name ``db``: ``tiny`` (the corpus'
    signatures), ``large`` (plus synthetic ones), either with ``-phish``: plus a
    small .pdb, which turns libclamav's phishing check on (clamd: in its mail
    parser; scand: on the text parts it hands over)."""
    size, _, phish = db.partition("-")
    if size not in ("tiny", "large") or phish not in ("", "phish"):
        raise SystemExit(f"--dbs: unknown set {db!r} (tiny, large, tiny-phish, large-phish)")
    sigdir = tiny if size == "tiny" else large_db(OUT / "sigs-large", tiny)
    if not phish:
        return sigdir
    out = OUT / f"sigs-{db}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for f in sigdir.iterdir():
        if not f.name.startswith("."):
            shutil.copy(f, out / f.name)
    (out / "bench.pdb").write_text("".join(f"H:{host}\n" for host in PHISH_HOSTS))
    return out


def start_clamd(workdir: Path, signatures: Path, concurrent_reload: bool,
                cache: bool, tmp_parent: str = "") -> Managed:
    """clamd on scand's managed clamd.conf (:func:`bench.procs.start_clamd`); ``cache``
    False: ``DisableCache yes``, as scand's clamav engine runs (the cache changes
    verdicts; on a corpus replayed in a loop it would turn the bench into a cache test)."""
    return procs.start_clamd(workdir, signatures, 300.0, cache=cache, tmp_parent=tmp_parent,
                             concurrent_reload=concurrent_reload)


class PssSampler(threading.Thread):
    """Summed PSS of a process and all its descendants, every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def total(self) -> int:
        try:
            procs = [psutil.Process(self.pid), *psutil.Process(self.pid).children(True)]
        except psutil.Error:
            return 0
        n = 0
        for p in procs:
            with contextlib.suppress(OSError):
                n += usage(p.pid).pss
        return n

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.monotonic(), self.total()))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def start(side: str, workdir: Path, sigdir: Path, args: argparse.Namespace,
          concurrent_reload: bool = False) -> Managed:
    if side == "scand":
        config = None
        # Replayed in a loop, the corpus would be a cache test: the cache is off.
        text = "" if args.scand_cache else '[cache]\nbackend = "none"\n'
        text += args.toml.replace("\\n", "\n")
        if text:
            workdir.mkdir(parents=True, exist_ok=True)
            config = workdir / "scand.toml"
            config.write_text(text + "\n")
        return start_scand(workdir, args.engine, args.workers, sigdir, config,
                           ready_timeout=600.0)
    return start_clamd(workdir, sigdir, concurrent_reload, args.clamd_cache, args.clamd_tmp)


def drive(side: str, sock: str, out: Path, args: argparse.Namespace,
          duration: float) -> dict[str, Any]:
    argv = ["--target", side, "--socket", sock, "--duration", str(duration), "-c", "16",
            "--corpus-size", str(args.corpus_size), "--out", str(out), "--no-plot"]
    if side == "scand":
        argv += ["--expect", "auto"]
    bomber.main(argv)
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


def one_run(side: str, db: str, sigdir: Path, rnd: int, args: argparse.Namespace,
            base: Path) -> dict[str, Any]:
    workdir = base / f"{db}-{side}-{rnd}"
    t0 = time.monotonic()
    proc = start(side, workdir / "daemon", sigdir, args)
    load_s = time.monotonic() - t0
    sampler = PssSampler(proc.pid)
    sampler.start()
    try:
        idle_pss = sampler.total()
        summary = drive(side, proc.socket, workdir / "bomber", args, args.duration)
    finally:
        sampler.stop()
        proc.stop()
    cpu = summary["cpu_seconds"]
    msgs = max(summary["messages"], 1)
    own = sum(v for k, v in cpu.items() if k in ("daemon", "zygote", "worker", "clamd"))
    return {
        "side": side, "db": db, "round": rnd, "start_s": round(load_s, 1),
        "msgs_per_s": summary["msgs_per_s"], "p99_ms": summary["latency_ms"]["p99"],
        "p50_ms": summary["latency_ms"]["p50"], "misses": summary["misses"],
        "errors": summary["error_count"], "messages": summary["messages"],
        "idle_pss_mib": round(idle_pss / 2**20, 1),
        "peak_pss_mib": round(max((m for _, m in sampler.samples), default=0) / 2**20, 1),
        "cpu_ms_per_msg": {k: round(v * 1000 / msgs, 3) for k, v in cpu.items()},
        "server_cpu_ms_per_msg": round(own * 1000 / msgs, 3),
    }


def reload_run(side: str, db: str, sigdir: Path, args: argparse.Namespace,
               base: Path) -> dict[str, Any]:
    """Peak summed PSS while the daemon reloads the same set under load."""
    workdir = base / f"{db}-{side}-reload"
    proc = start(side, workdir / "daemon", sigdir, args, concurrent_reload=True)
    sampler = PssSampler(proc.pid, 0.1)
    sampler.start()
    result: dict[str, Any] = {}
    try:
        time.sleep(1.0)
        before = sampler.total()
        loader = threading.Thread(target=drive, args=(side, proc.socket, workdir / "bomber",
                                                      args, args.reload_window))
        loader.start()
        time.sleep(2.0)
        t_reload = time.monotonic()
        reply = ask_line(proc.socket, b"RELOAD\n" if side == "scand" else b"nRELOAD\n", 10.0)
        loader.join()
        result = {"side": side, "db": db, "reply": reply.decode().strip(),
                  "before_pss_mib": round(before / 2**20, 1),
                  "peak_pss_mib": round(max(m for t, m in sampler.samples if t >= t_reload)
                                        / 2**20, 1)}
    finally:
        sampler.stop()
        proc.stop()
    return result


def engine_only(db: str, sigdir: Path, corpus_dir: Path, base: Path, clamd_tmp: str = "",
                files: int = 300, procs: int = 8) -> dict[str, Any]:
    """The engines without scand's Python path: ``procs`` processes forked from one
    loaded libclamav engine, each scanning the same ``files`` corpus messages by
    descriptor, against clamd with ``procs`` concurrent ``SCAN`` connections."""
    import socket as socketmod


    paths = sorted(str(p.resolve()) for p in (corpus_dir / "spool").rglob("*.eml"))[:files]
    n = procs * len(paths)
    clamd = start_clamd(base / f"{db}-engine-only-clamd", sigdir, False, False, clamd_tmp)
    try:
        proc = psutil.Process(clamd.pid)
        cpu0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()

        def client() -> None:
            for path in paths:
                with socketmod.socket(socketmod.AF_UNIX) as s:
                    s.connect(clamd.socket)
                    s.sendall(f"nSCAN {path}\n".encode())
                    s.recv(4096)

        threads = [threading.Thread(target=client) for _ in range(procs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        clamd_wall = time.monotonic() - t0
        clamd_cpu = sum(proc.cpu_times()[:2]) - cpu0
    finally:
        clamd.stop()
    t0 = time.monotonic()
    forked_cpu = forked_scans(sigdir, paths, procs)
    forked_wall = time.monotonic() - t0
    return {"db": db, "files": n,
            "clamd_files_per_s": round(n / clamd_wall, 1),
            "clamd_cpu_ms_per_file": round(clamd_cpu * 1000 / n, 3),
            "libclamav_files_per_s": round(n / forked_wall, 1),
            "libclamav_cpu_ms_per_file": round(forked_cpu * 1000 / n, 3)}


def forked_scans(sigdir: Path, paths: list[str], procs: int) -> float:
    """CPU seconds of ``procs`` processes forked from one loaded libclamav engine, each
    scanning every path once by descriptor (no walk, no IPC)."""
    import resource

    from scand.config import Config, EngineConfig
    from scand.engines.base import Target, load_engine

    engine = load_engine(Config(engine=EngineConfig("clamav", str(sigdir))))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    pids = []
    for _ in range(procs):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            engine.forked()
            for path in paths:
                fd = os.open(path, os.O_RDONLY)
                engine.scan_file(Target(path, fd, 0, 1 << 30))
                os.close(fd)
            engine.close()
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    engine.close()
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def engine_alone(sigdir: Path, corpus_dir: Path) -> float:
    """libclamav's own CPU per message on the whole corpus, the reference both sides'
    "outside the engine" figures are measured against: one process forked from a
    loaded engine scans every message once to warm up (page faults on the shared
    engine, cold caches: the bomber replays the corpus, so the servers are warm),
    then once more, counted (its own rusage). Measured after every round, under the
    round's load, and the median taken: one cold pass after the last round read
    0.4 ms above clamd's own in-run figure (a negative "outside")."""
    import resource

    from scand.config import Config, EngineConfig
    from scand.engines.base import Target, load_engine

    paths = sorted(str(p.resolve()) for p in (corpus_dir / "spool").rglob("*.eml"))
    engine = load_engine(Config(engine=EngineConfig("clamav", str(sigdir))))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:  # whatever happens, this child never returns into the benchmark
            os.close(read)
            engine.forked()
            spent = 0.0
            for counted in (False, True):
                t0 = resource.getrusage(resource.RUSAGE_SELF)
                for path in paths:
                    fd = os.open(path, os.O_RDONLY)
                    engine.scan_file(Target(path, fd, 0, 1 << 30))
                    os.close(fd)
                t1 = resource.getrusage(resource.RUSAGE_SELF)
                if counted:
                    spent = t1.ru_utime + t1.ru_stime - t0.ru_utime - t0.ru_stime
            os.write(write, repr(spent).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        spent = float(f.read() or b"nan")
    os.waitpid(pid, 0)
    engine.close()
    return round(spent * 1000 / len(paths), 3)


def median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dbs", default="tiny,large")
    ap.add_argument("--corpus-size", type=int, default=1000)
    ap.add_argument("--reload-window", type=float, default=15.0,
                    help="seconds of load around each reload measurement")
    ap.add_argument("--no-reload", action="store_true")
    ap.add_argument("--engine-only", action="store_true",
                    help="only the engines: 8 processes forked from one libclamav engine "
                         "against clamd with 8 connections (no scand daemon, no policy walk)")
    ap.add_argument("--engine", choices=("clamav", "clamd"), default="clamav",
                    help="scand's engine: clamav (libclamav in the workers, default) or "
                         "clamd (scand's managed clamd; the same clamd.conf as clamd direct)")
    ap.add_argument("--workers", type=int, default=0,
                    help="scand workers (default 0: scand's own default, two per CPU for "
                         "this engine; clamd runs its conf's MaxThreads 8)")
    ap.add_argument("--clamd-cache", action="store_true",
                    help="leave clamd's clean cache on (default: off, like scand's engine)")
    ap.add_argument("--clamd-tmp", default="", metavar="DIR",
                    help="parent of clamd's TemporaryDirectory (default: the run's own "
                         "directory on disk; /dev/shm gives clamd the tmpfs scand picks)")
    ap.add_argument("--scand-cache", action="store_true",
                    help="leave scand's verdict cache on (default: off; the corpus is "
                         "replayed in a loop, so the cache would answer the repeats)")
    ap.add_argument("--toml", default="", help="more scand config (TOML; \\n for new "
                    "lines), e.g. '[clamd]\\ntransfer = \"stream\"'")
    ap.add_argument("--load", type=int, default=0, metavar="N",
                    help="load the machine with N busy processes (a Python busy loop "
                         "each, started here and stopped by pid) for the whole run")
    args = ap.parse_args()
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(args.load)]
    try:
        return run(args)
    finally:
        for b in burners:
            b.kill()
            b.wait()


def run(args: argparse.Namespace) -> int:
    corpus_dir = OUT / f"corpus-s1-n{args.corpus_size}"
    corpus.load_or_generate(corpus_dir, args.corpus_size, 1)
    tiny = corpus.write_signatures(corpus_dir / "sigs")
    base = OUT / f"{time.strftime('%Y%m%d-%H%M%S')}-clamav"
    base.mkdir(parents=True)
    rows: list[dict[str, Any]] = []
    reloads: list[dict[str, Any]] = []
    for db in args.dbs.split(","):
        sigdir = sigdir_for(db, tiny)
        if args.engine_only:
            for _ in range(args.rounds):
                row = engine_only(db, sigdir, corpus_dir, base, args.clamd_tmp)
                print(json.dumps(row))
                rows.append(row)
            continue
        for rnd in range(1, args.rounds + 1):
            order = ("scand", "clamd") if rnd % 2 else ("clamd", "scand")
            for side in order:
                row = one_run(side, db, sigdir, rnd, args, base)
                print(json.dumps(row))
                rows.append(row)
            ref = {"side": "alone", "db": db, "round": rnd,
                   "cpu_ms_per_msg": engine_alone(sigdir, corpus_dir)}
            print(json.dumps(ref))
            rows.append(ref)
        if not args.no_reload:
            for side in ("scand", "clamd"):
                r = reload_run(side, db, sigdir, args, base)
                print(json.dumps(r))
                reloads.append(r)
    report: dict[str, Any] = {"runs": rows, "reloads": reloads, "medians": {}}
    if args.engine_only:
        for db in args.dbs.split(","):
            mine = [r for r in rows if r["db"] == db]
            report["medians"][db] = {k: median(mine, k) for k in mine[0] if k not in
                                     ("db", "files")}
            print(db, json.dumps(report["medians"][db]))
        (base / "engine_only.json").write_text(json.dumps(report, indent=2) + "\n")
        return 0
    for db in args.dbs.split(",") if rows else []:  # --rounds 0: reloads only
        s = [r for r in rows if r["db"] == db and r["side"] == "scand"]
        c = [r for r in rows if r["db"] == db and r["side"] == "clamd"]
        m: dict[str, Any] = {
            "scand_msgs_per_s": median(s, "msgs_per_s"),
            "clamd_msgs_per_s": median(c, "msgs_per_s"),
            "scand_p99_ms": median(s, "p99_ms"), "clamd_p99_ms": median(c, "p99_ms"),
            "scand_peak_pss_mib": median(s, "peak_pss_mib"),
            "clamd_peak_pss_mib": median(c, "peak_pss_mib"),
            "scand_server_cpu_ms_per_msg": median(s, "server_cpu_ms_per_msg"),
            "clamd_cpu_ms_per_msg": median(c, "server_cpu_ms_per_msg"),
            "scand_start_s": median(s, "start_s"), "clamd_start_s": median(c, "start_s"),
        }
        m["throughput_ratio"] = round(m["scand_msgs_per_s"] / m["clamd_msgs_per_s"], 2)
        m["p99_ratio"] = round(m["scand_p99_ms"] / m["clamd_p99_ms"], 2)
        # The same ratios within each round (its two sides ran back to back), and
        # their median: a host that slows down over the run (this one did, by a
        # third over 3 rounds of the large set, on both sides) moves the medians of
        # the sides apart, not the ratio of a round.
        by_round = {r["round"]: r for r in c}
        pairs = [(r, by_round[r["round"]]) for r in s if r["round"] in by_round]
        for key, label in (("msgs_per_s", "throughput"), ("p99_ms", "p99"),
                           ("server_cpu_ms_per_msg", "cpu")):
            ratios = [round(a[key] / b[key], 2) for a, b in pairs if b[key]]
            m[f"{label}_ratio_rounds"] = ratios
            m[f"{label}_ratio_paired"] = (round(statistics.median(ratios), 2) if ratios
                                          else None)
        # CPU outside the engine, each side against one reference: libclamav alone on
        # every corpus message (engine_alone: warm, after each round, the median). Not
        # scand minus clamd: that difference of two loaded runs swung by +-1 ms.
        refs = [r for r in rows if r["db"] == db and r["side"] == "alone"
                and r["cpu_ms_per_msg"] == r["cpu_ms_per_msg"]]  # (a failed pass: nan)
        alone = median(refs, "cpu_ms_per_msg") if refs else float("nan")
        m["libclamav_alone_cpu_ms_per_msg"] = alone
        m["scand_daemon_cpu_ms_per_msg"] = median(
            [{"v": r["cpu_ms_per_msg"].get("daemon", 0.0)} for r in s], "v")
        m["scand_worker_cpu_ms_per_msg"] = median(
            [{"v": r["cpu_ms_per_msg"].get("worker", 0.0)} for r in s], "v")
        m["scand_cpu_outside_engine_ms_per_msg"] = round(
            m["scand_server_cpu_ms_per_msg"] - alone, 3)
        m["clamd_cpu_outside_engine_ms_per_msg"] = round(m["clamd_cpu_ms_per_msg"] - alone, 3)
        report["medians"][db] = m
        print(db, json.dumps(m))
    (base / "bench_clamav.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {base}/bench_clamav.json  (load average {os.getloadavg()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
