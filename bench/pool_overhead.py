"""Pool dispatch overhead and worker replacement time (issue 2/7, item 7).

Measures, on the same small file:
  * in-process: Scanner.scan_path called directly (no pool, no IPC);
  * pool: Pool.scan(path) through a warm worker (pickle over a pipe, both ways);
  the difference of the medians is the added latency per request;
  * spawn: a worker forked by the zygote until its engine is loaded (Ready received);
  * replace: a worker crashes (chaos `crash`) -> until the pool is back to N live workers.

Usage: python bench/pool_overhead.py [--requests N] [--spawns N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scand import config as configmod
from scand import logs
from scand.config import Config
from scand.engines.base import load_engine
from scand.pool.pool import Pool
from scand.pool.process import WorkerProcess
from scand.pool.spawner import Spawner
from scand.worker.scanner import Scanner


def in_process(path: str, n: int) -> list[float]:
    scanner = Scanner(load_engine(Config()), Config())
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        scanner.scan_path(path)
        times.append(time.perf_counter() - t0)
    return times


async def through_pool(path: str, crash_path: str, n: int, spawns: int) -> dict[str, list[float]]:
    cfg = configmod.override(Config(), "engine", name="chaos")
    cfg = configmod.override(cfg, "pool", workers=2)
    out: dict[str, list[float]] = {"pool": [], "spawn": [], "replace": []}
    async with trio.open_nursery() as nursery:
        spawner = Spawner()
        await spawner.start(cfg)
        pool = Pool(cfg, spawner)
        await nursery.start(pool.run)
        for _ in range(20):  # warm-up
            await pool.scan(path=path)
        for _ in range(n):
            t0 = time.perf_counter()
            await pool.scan(path=path)
            out["pool"].append(time.perf_counter() - t0)
        for _ in range(spawns):
            t0 = time.perf_counter()
            worker = await WorkerProcess.spawn(spawner, cfg, 0)
            out["spawn"].append(time.perf_counter() - t0)
            await worker.kill()
        for _ in range(spawns):
            t0 = time.perf_counter()
            await pool.scan(path=crash_path)
            while len(pool.workers) < 2 or len(pool._idle) < 2:
                await trio.sleep(0.001)
            out["replace"].append(time.perf_counter() - t0)
        nursery.cancel_scope.cancel()
    await spawner.aclose()
    return out


def ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--spawns", type=int, default=15)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    logs.configure("error", "console")  # the crashes below are deliberate
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "mail.eml")
        Path(path).write_bytes(b"From: a@example.org\n\n" + b"hello world\n" * 1000)  # 12 KB
        crash = str(Path(d) / "crash")
        Path(crash).write_bytes(b"SCAND-CHAOS crash\n")
        local = in_process(path, args.requests)
        pooled = trio.run(through_pool, path, crash, args.requests, args.spawns)
    result = {
        "requests": args.requests,
        "in_process_ms_median": ms(local),
        "pool_ms_median": ms(pooled["pool"]),
        "added_ms_median": round(ms(pooled["pool"]) - ms(local), 3),
        "pool_ms_p99": round(sorted(pooled["pool"])[int(0.99 * len(pooled["pool"]))] * 1000, 3),
        "spawn_ms_median": ms(pooled["spawn"]),
        "replace_after_crash_ms_median": ms(pooled["replace"]),
    }
    for key, value in result.items():
        print(f"{key:32} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
