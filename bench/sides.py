"""Every engine against every clamd setup, side by side in one bomber command.

    python -m bench.bomber --sides scand:builtin,scand:clamav,scand:clamd,clamd:disk,clamd:tmpfs \\
        --no-cache --duration 20 --rounds 3 --expect mail+policy

Each side is one :func:`bench.bomber.run_once` on a fresh daemon; rounds run
the sides in turn, the order reversed every other round, so a load change on a
shared host falls on every side alike. A side is ``scand:<engine>`` (builtin,
chaos, clamav, clamd: scand's managed clamd) or ``clamd:<disk|tmpfs>`` (clamd
direct on scand's clamd.conf, its temp directory in the run directory or on
``/dev/shm``), with ``+cache`` for clamd's clean cache on. ``--no-cache``
turns every cache off. ``sides.json`` holds every run and the medians; the
table gives throughput, p99 and server CPU per message (daemon, zygote,
workers, clamd: read from each process, so it holds on a loaded host) against
the first clamd side.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SERVER_ROLES = ("daemon", "zygote", "worker", "clamd")
TMPFS = "/dev/shm"


def parse(spec: str) -> list[tuple[str, str, bool]]:
    """``scand:clamav,clamd:tmpfs+cache`` -> [(target, setup, clamd cache)]."""
    out = []
    for item in spec.split(","):
        target, _, setup = item.strip().partition(":")
        cache = setup.endswith("+cache")
        setup = setup.removesuffix("+cache")
        if target == "scand" and setup in ("builtin", "chaos", "clamav", "clamd"):
            out.append((target, setup, False))
        elif target == "clamd" and setup in ("disk", "tmpfs"):
            out.append((target, setup, cache))
        else:
            raise SystemExit(f"--sides: unknown side {item!r} (scand:<builtin|chaos|clamav|"
                             "clamd> or clamd:<disk|tmpfs>[+cache])")
    return out


def side_args(args: argparse.Namespace, target: str, setup: str, cache: bool
              ) -> argparse.Namespace:
    mine = copy.copy(args)
    mine.target, mine.repeat, mine.no_plot = target, 1, True
    if target == "scand":
        mine.engine = setup
    else:
        mine.clamd_tmp = TMPFS if setup == "tmpfs" else ""
        mine.clamd_cache = cache
        mine.expect = None  # clamd direct applies no policy: judged by its own profile
    return mine


def server_cpu_ms(summary: dict[str, Any]) -> dict[str, float]:
    cpu = summary.get("cpu_seconds", {})
    n = max(int(summary.get("messages", 0)), 1)
    per = {k: round(v * 1000 / n, 3) for k, v in cpu.items() if k in SERVER_ROLES}
    per["server"] = round(sum(per.values()), 3)
    return per


def run(args: argparse.Namespace, manifest: dict[str, Any], corpus_dir: Path, sigdir: Path,
        run_once: Callable[..., dict[str, Any]]) -> int:
    sides = parse(args.sides)
    out = (args.out or corpus_dir.parent / f"{time.strftime('%Y%m%d-%H%M%S')}-sides").resolve()
    rows: list[dict[str, Any]] = []
    failed = False
    for rnd in range(1, args.rounds + 1):
        order = sides if rnd % 2 else list(reversed(sides))
        for target, setup, cache in order:
            label = f"{target}:{setup}{'+cache' if cache else ''}"
            mine = side_args(args, target, setup, cache)
            rundir = out / f"r{rnd}-{label.replace(':', '-').replace('+', '-')}"
            summary = run_once(mine, manifest, corpus_dir, sigdir, rundir)
            failed |= bool(summary.get("misses")) or bool(summary.get("error_count"))
            rows.append({"side": label, "round": rnd, "msgs_per_s": summary["msgs_per_s"],
                         "p99_ms": summary["latency_ms"]["p99"],
                         "p50_ms": summary["latency_ms"]["p50"],
                         "messages": summary["messages"], "misses": summary["misses"],
                         "cpu_ms_per_msg": server_cpu_ms(summary)})
    labels = [f"{t}:{s}{'+cache' if c else ''}" for t, s, c in sides]
    medians = {}
    for label in labels:
        runs = [r for r in rows if r["side"] == label]
        medians[label] = {
            "msgs_per_s": statistics.median(r["msgs_per_s"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "cpu_ms_per_msg": {k: round(statistics.median(r["cpu_ms_per_msg"].get(k, 0.0)
                                                          for r in runs), 3)
                               for k in (*SERVER_ROLES, "server")},
        }
    base = next((lab for lab in labels if lab.startswith("clamd:")), labels[0])
    print(table(medians, base, args.rounds))
    (out / "sides.json").write_text(json.dumps({"command": " ".join(
        ["python -m bench.bomber", *args.argv]), "runs": rows, "medians": medians,
        "baseline": base}, indent=2) + "\n")
    print(f"wrote {out}/sides.json")
    return 1 if failed else 0


def table(medians: dict[str, dict[str, Any]], base: str, rounds: int) -> str:
    b = medians[base]
    lines = [f"medians of {rounds} round(s); ratios against {base}",
             "| side | msgs/s | x | p99 ms | x | server CPU ms/msg | x | split |",
             "|---|---|---|---|---|---|---|---|"]
    for label, m in medians.items():
        cpu = m["cpu_ms_per_msg"]
        split = ", ".join(f"{k} {cpu[k]}" for k in SERVER_ROLES if cpu.get(k))
        lines.append(
            f"| {label} | {m['msgs_per_s']} | {m['msgs_per_s'] / max(b['msgs_per_s'], 1e-9):.2f}"
            f" | {m['p99_ms']} | {m['p99_ms'] / max(b['p99_ms'], 1e-9):.2f}"
            f" | {cpu['server']} | {cpu['server'] / max(b['cpu_ms_per_msg']['server'], 1e-9):.2f}"
            f" | {split} |")
    return "\n".join(lines)
