"""Verdict-cache throughput: with the cache against without, on a Klez-shaped flood and
on a corpus with no repeats (issue 18, acceptance 1).

Usage: python bench/bench_cache.py [--messages 400] [--rounds 3] [--ndb 10000]
                                   [--workers 2] [--clients 4] [--engine builtin]
                                   [--mode daemon|cpu]

For each corpus, a real daemon per variant (cache ``none``, ``memory``, ``redis``
on a private redis-server) scans every message once by path from ``--clients``
connections; the variants run alternately in each round (the machine is shared
and noisy), and each figure is the median of ``--rounds``. Every verdict is
checked against the corpus: a wrong one aborts the run. Caches start empty in
every round (fresh daemon, FLUSHALL), so a round includes its misses.

``--mode cpu`` measures the worker's scan path in this process instead (the
Scanner a worker runs, one cache): CPU seconds per message from
``time.process_time``, which a busy shared machine disturbs far less than
wall-clock throughput; reported as messages per CPU second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.klez import Mail, klez, no_repeats, write_signatures
from bench.procs import RedisServer, start_scand
from bench.targets import _Conn


def write_secret(directory: Path) -> Path:
    """The farm secret a Redis cache needs (cache.secret_file: private, 16 bytes or more)."""
    path = directory / "cache.secret"
    path.write_text("bench-farm-secret-0123456789abcdef\n")
    path.chmod(0o600)
    return path


def run_once(workdir: Path, n: int, sigdir: Path, paths: list[str], expect: list[str],
             backend: str, redis_url: str, args: argparse.Namespace) -> float:
    cfg = f'[cache]\nbackend = "{backend}"\n'
    if backend == "redis":
        cfg += f'redis_url = "{redis_url}"\nsecret_file = "{write_secret(workdir)}"\n'
    (workdir / f"d{n}").mkdir(parents=True, exist_ok=True)
    (workdir / f"d{n}" / "scand.toml").write_text(cfg)
    d = start_scand(workdir / f"d{n}", args.engine, args.workers, sigdir,
                    workdir / f"d{n}" / "scand.toml")
    try:
        lock = threading.Lock()
        todo = list(range(len(paths)))
        wrong: list[str] = []

        def client() -> None:
            c = _Conn(d.socket, 60.0)
            try:
                while True:
                    with lock:
                        if not todo:
                            return
                        i = todo.pop()
                    c.open().sendall(f"{paths[i]}\n".encode())
                    got = c.read_until(b"\n").decode().strip()
                    if not right(got, expect[i]):
                        wrong.append(f"{paths[i]}: {got!r} != {expect[i]!r}")
            finally:
                c.close()

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        if wrong:
            raise SystemExit(f"WRONG VERDICTS ({backend}): {wrong[:5]}")
        return len(paths) / elapsed
    finally:
        d.stop()


def right(got: str, expect: str) -> bool:
    """ClamAV (the clamav and clamd engines) adds ``.UNOFFICIAL`` to private signatures."""
    return got == expect or (expect != "0" and got == f"{expect}.UNOFFICIAL")


def run_cpu(sigdir: Path, mails: list[Mail], backend: str, redis_url: str,
            engine: str) -> float:
    """Messages per CPU second of the in-process scan path with ``backend``."""
    from scand import config as configmod
    from scand.config import Config
    from scand.engines.base import load_engine
    from scand.protocol import format_verdict
    from scand.worker.scanner import Scanner

    cfg = configmod.override(Config(), "engine", name=engine, signatures=str(sigdir))
    secret = str(write_secret(sigdir.parent)) if backend == "redis" else None
    cfg = configmod.override(cfg, "cache", backend=backend, redis_url=redis_url or None,
                             secret_file=secret)
    scanner = Scanner(load_engine(cfg), cfg)
    scanner.scan_stream(b"warm-up: builds the signature automaton")
    t0 = time.process_time()
    for m in mails:
        got = format_verdict(scanner.scan_stream(m.data).verdict).decode().strip()
        if not right(got, m.expect):
            raise SystemExit(f"WRONG VERDICT ({backend}): {got!r} != {m.expect!r}")
    return len(mails) / (time.process_time() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ndb", type=int, default=10000, help="random body signatures added")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--engine", default="builtin")
    ap.add_argument("--variants", default="none,memory,redis")
    ap.add_argument("--mode", choices=("daemon", "cpu"), default="daemon")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    variants = args.variants.split(",")
    if "redis" in variants and shutil.which("redis-server") is None:
        variants.remove("redis")
    work = Path(tempfile.mkdtemp(prefix="scand-cb-", dir="/tmp"))
    work.chmod(0o755)
    redis = RedisServer(work) if "redis" in variants else None
    try:
        if redis is not None:
            redis.start()
        sigdir = write_signatures(work / "sigs", ndb=args.ndb)
        corpora: dict[str, list[Mail]] = {"klez": klez(args.messages),
                                          "no-repeats": no_repeats(args.messages)}
        results: dict[str, dict[str, list[float]]] = {}
        n = 0
        for name, mails in corpora.items():
            spool = work / name
            spool.mkdir()
            paths = []
            for i, m in enumerate(mails):
                (spool / f"{i}.eml").write_bytes(m.data)
                paths.append(str(spool / f"{i}.eml"))
            expect = [m.expect for m in mails]
            results[name] = {v: [] for v in variants}
            for r in range(args.rounds):
                order = variants if r % 2 == 0 else variants[::-1]
                for v in order:
                    if redis is not None:
                        redis.command(b"FLUSHALL")
                    url = redis.url if redis else ""
                    if args.mode == "cpu":
                        rate = run_cpu(sigdir, mails, v, url, args.engine)
                    else:
                        rate = run_once(work, n, sigdir, paths, expect, v, url, args)
                    n += 1
                    results[name][v].append(rate)
                    print(f"{name:11} round {r + 1} {v:7} {rate:8.1f} msgs/s", flush=True)
        summary = {"args": vars(args), "cpus": os.cpu_count(), "runs": results,
                   "median": {c: {v: round(statistics.median(x), 1) for v, x in r.items()}
                              for c, r in results.items()}}
        print()
        for c, med in summary["median"].items():  # type: ignore[union-attr]
            base = med.get("none") or 1.0
            line = "  ".join(f"{v}={x} ({x / base:.2f}x)" for v, x in med.items())
            unit = "msgs/CPU-s" if args.mode == "cpu" else "msgs/s"
            print(f"{c:11} median {unit}: {line}")
        out = Path(args.out or f"bench/out/cache-{args.mode}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=1))
    finally:
        if redis is not None:
            redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
