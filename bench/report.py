"""The bomber's report: progress bar, summary table, JSON, latency CSV and a PNG.

Throughput and latency count only replies completed after the warm-up; every
reply, warm-up included, is judged for misses.

RSS trend (leak mode): a least-squares line through the total RSS of the
processes under test over the second half of the run; ``rss_trend_pct`` is
that line's rise across the half as a percentage of the half's mean RSS
(the target is within +/-2%).
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from bench.driver import Results
from bench.sampler import Tick
from bench.verdicts import BLIND, OK, UNCHECKED

MB = 1e6


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: float, unit: str, stream: TextIO = sys.stderr) -> None:
        self.total, self.unit, self.stream = total, unit, stream
        self.enabled = stream.isatty()

    def show(self, elapsed: float, done: int, misses: int, errors: int) -> None:
        if not self.enabled:
            return
        value = elapsed if self.unit == "s" else done
        frac = min(1.0, value / self.total) if self.total else 0.0
        bar = "#" * int(frac * 30)
        rate = done / elapsed if elapsed > 0 else 0.0
        self.stream.write(f"\r[{bar:<30}] {value:7.1f}/{self.total:g}{self.unit} "
                          f"{done:8d} msgs {rate:8.1f}/s misses {misses} errors {errors} ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def trend(ticks: list[Tick]) -> dict[str, float]:
    """Peak total RSS and the least-squares trend over the second half, in MiB and %."""
    if not ticks:
        return {"peak_total_mib": 0.0, "rss_trend_pct": 0.0, "rss_slope_mib_per_min": 0.0}
    peak = max(t.total for t in ticks)
    half = [t for t in ticks if t.t >= ticks[-1].t / 2]
    if len(half) < 3:
        return {"peak_total_mib": round(peak, 1), "rss_trend_pct": 0.0,
                "rss_slope_mib_per_min": 0.0}
    xs = [t.t for t in half]
    ys = [t.total for t in half]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    rise = slope * (xs[-1] - xs[0])
    return {"peak_total_mib": round(peak, 1),
            "second_half_mean_mib": round(my, 1),
            "rss_slope_mib_per_min": round(slope * 60, 2),
            "rss_trend_pct": round(100 * rise / my, 2) if my else 0.0}


def recycles_delta(first: dict[str, Any] | None, last: dict[str, Any] | None) -> dict[str, int]:
    if not last:
        return {}
    before = (first or {}).get("pool", {}).get("recycles", {})
    after = last.get("pool", {}).get("recycles", {})
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def summarize(res: Results, ticks: list[Tick], warmup: float, elapsed: float,
              first_stats: dict[str, Any] | None, last_stats: dict[str, Any] | None,
              setup: dict[str, Any], cpu: dict[str, float]) -> dict[str, Any]:
    keep = [i for i, t in enumerate(res.done_at) if t >= warmup]
    lat = sorted(res.latency[i] * 1000 for i in keep)
    nbytes = sum(res.sizes[i] for i in keep)
    window = max(elapsed - warmup, 1e-9)
    verdicts: Counter[str] = Counter()
    unchecked: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    blind_detected = 0
    for (outcome, verdict), n in res.outcomes.items():
        outcomes[outcome] += n
        word, _, reason = verdict.partition(":")
        verdicts[word] += n
        if outcome == UNCHECKED:
            unchecked[reason] += n
        if outcome == BLIND and word in ("infected", "banned"):
            blind_detected += n
    clamd = (last_stats or {}).get("clamd") or {}
    return {
        "setup": setup,
        "messages": res.completed,
        "measured": {"messages": len(lat), "seconds": round(window, 2),
                     "warmup_s": warmup, "bytes": nbytes},
        "msgs_per_s": round(len(lat) / window, 1),
        "mb_per_s": round(nbytes / MB / window, 2),
        "latency_ms": {"p50": round(percentile(lat, 0.50), 2),
                       "p95": round(percentile(lat, 0.95), 2),
                       "p99": round(percentile(lat, 0.99), 2),
                       "max": round(lat[-1], 2) if lat else 0.0},
        "verdicts": dict(verdicts),
        "unchecked_by_reason": dict(unchecked),
        "correct": outcomes[OK],
        "blind": {"count": outcomes[BLIND], "detected_anyway": blind_detected},
        "wrong_names": dict(res.notes),
        "misses": res.miss_count,
        "miss_examples": res.misses[:20],
        "errors": dict(res.errors),
        "error_count": sum(res.errors.values()),
        "recycles": recycles_delta(first_stats, last_stats),
        "clamd_restarts": clamd.get("restarts"),
        "rss": trend(ticks) | {"peak_by_role_mib": peak_by_role(ticks)},
        "cpu_seconds": cpu,
        "elapsed_s": round(elapsed, 2),
        "daemon_stats": last_stats,
    }


def peak_by_role(ticks: list[Tick]) -> dict[str, float]:
    out: dict[str, float] = {}
    for tick in ticks:
        sums: dict[str, float] = {}
        for role, mib in tick.rss.values():
            sums[role] = sums.get(role, 0.0) + mib
        for role, mib in sums.items():
            out[role] = round(max(out.get(role, 0.0), mib), 1)
    return out


def table(s: dict[str, Any]) -> str:
    setup = s["setup"]
    lat = s["latency_ms"]
    blind = s["blind"]
    roles = ", ".join(f"{k} {v}" for k, v in sorted(s["rss"]["peak_by_role_mib"].items()))
    workers = f", {setup['workers']} workers" if setup.get("workers") else ""
    rows = [
        ("run", f"{setup['target']} ({setup['engine']}{workers}), "
                f"{setup['transfer']}, {setup['connect']}, c={setup['concurrency']}"
                f"{', flood' if setup.get('flood') else ''}"
                f"{', chaos ' + setup['chaos'] if setup.get('chaos') else ''}"),
        ("corpus", f"{setup['corpus']} (seed {setup['seed']}, profile {setup['profile']})"),
        ("measured", f"{s['measured']['messages']} msgs in {s['measured']['seconds']} s "
                     f"(after {s['measured']['warmup_s']} s warm-up; {s['messages']} in all)"),
        ("throughput", f"{s['msgs_per_s']} msgs/s, {s['mb_per_s']} MB/s"),
        ("latency ms", f"p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}"),
        ("verdicts", ", ".join(f"{k} {v}" for k, v in sorted(s["verdicts"].items())) or "-"),
        ("unchecked", ", ".join(f"{k} {v}" for k, v in sorted(s["unchecked_by_reason"].items()))
         or "0"),
        ("not judged", f"{blind['count']} infected but invisible to profile {setup['profile']}"
                       f" ({blind['detected_anyway']} detected anyway)"),
        ("misses", str(s["misses"])),
        ("errors", str(s["error_count"])),
        ("recycles", ", ".join(f"{k} {v}" for k, v in sorted(s["recycles"].items())) or "0"),
        ("RSS", f"peak total {s['rss']['peak_total_mib']} MiB ({roles}); "
                f"second-half trend {s['rss']['rss_trend_pct']:+}%"),
        ("CPU s", ", ".join(f"{k} {v}" for k, v in sorted(s["cpu_seconds"].items()))
                  + f" (in {s['elapsed_s']} s on {setup['cpus']} CPUs)"),
        ("machine", f"{setup['cpus']} CPUs, load average {setup['load_before']} before, "
                    f"{setup.get('load_after', '-')} after"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    for m in s["miss_examples"][:10]:
        lines.append(f"  MISS {m['path']}: owed {m['owed']}, got {m['reply']!r} ({m['why']})")
    for e, n in list(s["errors"].items())[:5]:
        lines.append(f"  ERROR x{n}: {e}")
    return "\n".join(lines)


def per_second(res: Results, elapsed: float) -> list[dict[str, float]]:
    """Replies per one-second bucket; ``msgs_per_s`` scales the last, partial bucket."""
    buckets: dict[int, list[float]] = {}
    for t, lat in zip(res.done_at, res.latency, strict=True):
        buckets.setdefault(int(t), []).append(lat * 1000)
    out = []
    for sec in sorted(buckets):
        ordered = sorted(buckets[sec])
        width = max(min(1.0, elapsed - sec), 0.05)
        out.append({"t_s": sec, "msgs": len(ordered), "msgs_per_s": len(ordered) / width,
                    "p50_ms": percentile(ordered, 0.5), "p99_ms": percentile(ordered, 0.99),
                    "max_ms": ordered[-1]})
    return out


def write_latency_csv(path: Path, series: list[dict[str, float]]) -> None:
    with open(path, "w") as f:
        f.write("t_s,msgs,msgs_per_s,p50_ms,p99_ms,max_ms\n")
        for row in series:
            f.write(f"{row['t_s']},{row['msgs']},{row['msgs_per_s']:.1f},{row['p50_ms']:.3f},"
                    f"{row['p99_ms']:.3f},{row['max_ms']:.3f}\n")


def write_json(path: Path, summary: dict[str, Any]) -> None:
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")


ROLE_COLORS = {"daemon": "tab:blue", "zygote": "tab:gray", "worker": "tab:orange",
               "clamd": "tab:red"}


def plot(path: Path, ticks: list[Tick], series: list[dict[str, float]], title: str) -> bool:
    """RSS per process (top) and latency per second (bottom); False if matplotlib is missing."""
    try:
        os.environ.setdefault("MPLBACKEND", "Agg")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    lines: dict[int, tuple[str, list[float], list[float]]] = {}
    for tick in ticks:
        for pid, (role, mib) in tick.rss.items():
            lines.setdefault(pid, (role, [], []))
            lines[pid][1].append(tick.t)
            lines[pid][2].append(mib)
    labelled: set[str] = set()
    for _pid, (role, xs, ys) in sorted(lines.items()):
        label = None if role in labelled else role
        labelled.add(role)
        top.plot(xs, ys, color=ROLE_COLORS.get(role, "tab:green"), lw=1, label=label)
    if ticks:
        top.plot([t.t for t in ticks], [t.total for t in ticks], "k--", lw=1, label="total")
        prev = ticks[0].recycles
        for tick in ticks:
            if tick.recycles > prev:
                top.axvline(tick.t, color="tab:purple", alpha=0.25, lw=0.8)
            prev = tick.recycles
    top.set_ylabel("RSS (MiB), one line per process")
    top.set_title(title, fontsize=9)
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    xs = [row["t_s"] + 0.5 for row in series]
    for key, style in (("p50_ms", "tab:blue"), ("p99_ms", "tab:orange"), ("max_ms", "tab:red")):
        bottom.plot(xs, [max(row[key], 1e-3) for row in series], color=style, lw=1,
                    label=key.removesuffix("_ms"))
    bottom.set_yscale("log")
    bottom.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    bottom.set_ylabel("latency per second (ms)")
    bottom.set_xlabel("seconds since start (purple lines: worker recycles)")
    bottom.grid(alpha=0.3)
    rate = bottom.twinx()
    full = [row for row in series if row["msgs_per_s"] == row["msgs"]]  # not the drain's tail
    rate.plot([row["t_s"] + 0.5 for row in full], [row["msgs_per_s"] for row in full],
              color="tab:green", lw=0.8, alpha=0.6)
    rate.set_ylim(bottom=0)
    rate.set_ylabel("msgs/s", color="tab:green")
    bottom.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def median_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each headline figure over repeated runs (for the README tables)."""

    def med(values: list[float]) -> float:
        ordered = sorted(values)
        mid = len(ordered) // 2
        if len(ordered) % 2:
            return ordered[mid]
        return (ordered[mid - 1] + ordered[mid]) / 2

    return {
        "runs": len(runs),
        "msgs_per_s": med([r["msgs_per_s"] for r in runs]),
        "mb_per_s": med([r["mb_per_s"] for r in runs]),
        "latency_ms": {k: med([r["latency_ms"][k] for r in runs])
                       for k in ("p50", "p95", "p99", "max")},
        "peak_total_rss_mib": med([r["rss"]["peak_total_mib"] for r in runs]),
        "rss_trend_pct": med([r["rss"]["rss_trend_pct"] for r in runs]),
        "recycles": med([sum(r["recycles"].values()) for r in runs]),
        "misses": sum(r["misses"] for r in runs),
        "errors": sum(r["error_count"] for r in runs),
        "each": [{"msgs_per_s": r["msgs_per_s"], "p99": r["latency_ms"]["p99"]} for r in runs],
    }


def is_failure(summary: dict[str, Any]) -> bool:
    return bool(summary["misses"] or summary["error_count"])

