"""What ``scand top`` and ``scand stats`` show: a STATS dict -> lines of text. Pure.

:func:`render` lays one STATS reply (service.Service.stats_dict) out for a
terminal of a given size: a summary (engine and why, requests per second,
latency percentiles, verdicts, queue, recycles by reason, cache hit rate,
memory), then one row per worker (state, private memory, jobs, age,
generation). Every line fits ``width``; the worker table is cut to fit
``height`` with a line saying how many rows were left out. No I/O, no clock:
the caller passes the request rate it measured between two replies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# Narrowest and shortest terminal the view is laid out for (a plain SSH session).
MIN_WIDTH = 40
MIN_HEIGHT = 8
WORKER_HEADER = f"{'PID':>8} {'STATE':<8} {'GEN':>3} {'PRIVATE':>8} {'PSS':>8} " \
                f"{'JOBS':>7} {'AGE':>8}  NOTE"


def size(n: float) -> str:
    """Bytes, short: 512B, 3.2K, 61.0M, 1.50G."""
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}" if unit == "G" else f"{n / scale:.1f}{unit}"
    return f"{int(n)}B"


def duration(seconds: float) -> str:
    """Seconds, short: 42s, 5m07s, 3h04m, 2d05h."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _get(d: Mapping[str, Any], *keys: str, default: Any = 0) -> Any:
    """A nested value, or ``default`` when a daemon's STATS lacks it."""
    cur: Any = d
    for key in keys:
        if not isinstance(cur, Mapping) or key not in cur:
            return default
        cur = cur[key]
    return cur


def _counts(counts: Mapping[str, Any], order: Sequence[str] = ()) -> str:
    """``clean 10  infected 2  busy 1``: known names first, then the rest by count."""
    names = [n for n in order if n in counts]
    names += sorted((n for n in counts if n not in names), key=lambda n: (-counts[n], n))
    return "  ".join(f"{n} {counts[n]}" for n in names) or "none"


def summary(stats: Mapping[str, Any], rate: float | None = None) -> list[str]:
    """The lines above the worker table (not yet cut to a width)."""
    engine = _get(stats, "engine", default={})
    pool = _get(stats, "pool", default={})
    workers = _get(pool, "workers", default=[])
    generations = [w.get("generation", 0) for w in workers if isinstance(w, Mapping)]
    uptime = float(_get(stats, "uptime"))
    requests = int(_get(stats, "requests"))
    if rate is None:  # one reply: the average since start
        per_second = f"{requests / uptime:.1f}/s avg" if uptime > 0 else "-"
    else:
        per_second = f"{rate:.1f}/s"
    lat = _get(stats, "latency_ms", default={})
    hits, misses = int(_get(stats, "cache", "hits")), int(_get(stats, "cache", "misses"))
    lookups = hits + misses
    hit_rate = f"{100 * hits / lookups:.1f}%" if lookups else "-"
    lines = [
        f"scand {_get(stats, 'version', default='?')}  up {duration(uptime)}  "
        f"engine {_get(engine, 'name', default='?')} {_get(engine, 'signatures', default='')}"
        f"  generation {max(generations, default=0)}",
    ]
    if _get(engine, "reason", default=""):
        lines.append(f"  {engine['reason']}")
    lines += [
        f"requests {requests}  {per_second}  commands {_get(stats, 'commands')}  "
        f"bytes {size(float(_get(stats, 'bytes')))}",
        "latency ms  " + "  ".join(f"{k} {_get(lat, k, default=0.0):g}"
                                   for k in ("p50", "p90", "p99", "max")),
        "verdicts  " + _counts(_get(stats, "verdicts", default={}), ("clean", "infected")),
        f"queue {_get(pool, 'queue')}  workers {_get(pool, 'live')}/{_get(pool, 'size')} "
        f"(busy {_get(pool, 'busy')}, idle {_get(pool, 'idle')})  "
        f"spawned {_get(pool, 'spawned_total')}  last spawn {_get(pool, 'last_spawn_ms')} ms",
        "recycles  " + "  ".join(f"{k} {v}" for k, v in _get(pool, "recycles",
                                                             default={}).items()),
        f"cache  hits {hits}  misses {misses}  hit rate {hit_rate}",
        f"memory  private {size(float(_get(pool, 'private_total')))}  "
        f"pss {size(float(_get(pool, 'pss_total')))}  rss {size(float(_get(pool, 'rss_total')))}",
    ]
    check = _get(stats, "self_check", default=None)
    if isinstance(check, Mapping) and check.get("directory"):
        kept = "  BROKEN SET KEPT (fix the directory)" if check.get("kept_broken") else ""
        lines.append(f"self-check {check['directory']} every {check.get('interval', 0):g}s  "
                     f"checks {check.get('checks', 0)}  reloads {check.get('reloads', 0)}"
                     f"{kept}")
    clamd = _get(stats, "clamd", default=None)
    if isinstance(clamd, Mapping):
        lines.append(f"clamd {clamd.get('mode', '')} {clamd.get('version', '')}  pid "
                     f"{clamd.get('pid')}  rss {size(float(clamd.get('rss') or 0))}  "
                     f"restarts {clamd.get('restarts', 0)}  "
                     f"switches {sum((clamd.get('switches') or {}).values())}")
    return lines


def worker_rows(stats: Mapping[str, Any]) -> list[str]:
    """One row per worker, in the daemon's order."""
    rows = []
    for w in _get(stats, "pool", "workers", default=[]):
        note = w.get("lifecycle", "")
        if w.get("retiring"):
            note = f"retiring: {w['retiring']}"
        rows.append(f"{w.get('pid', '?'):>8} {w.get('state', '?'):<8} "
                    f"{w.get('generation', 0):>3} {size(float(w.get('private', 0))):>8} "
                    f"{size(float(w.get('pss', 0))):>8} {w.get('jobs', 0):>7} "
                    f"{duration(float(w.get('age', 0))):>8}  {note}")
    return rows


def render(stats: Mapping[str, Any], width: int = 80, height: int = 24,
           rate: float | None = None, status: str = "") -> list[str]:
    """The whole screen: at most ``height`` lines of at most ``width`` characters.

    ``rate`` is requests per second measured between two replies (None: the
    average since start); ``status`` is the bottom line (a key help, a warning)."""
    width, height = max(width, MIN_WIDTH), max(height, MIN_HEIGHT)
    top = [*summary(stats, rate), "", WORKER_HEADER]
    rows = worker_rows(stats)
    room = height - len(top) - (1 if status else 0)
    if len(rows) > room:
        keep = max(room - 1, 0)
        rows = [*rows[:keep],
                f"  ... {len(rows) - keep} more workers (a taller terminal shows them)"]
    lines = top + rows
    lines = lines[: height - (1 if status else 0)]
    if status:
        lines += [""] * (height - 1 - len(lines)) + [status]
    return [line[:width] for line in lines]


def unreachable(address: str, error: str, width: int = 80, height: int = 24,
                status: str = "") -> list[str]:
    """The screen while the daemon does not answer."""
    width, height = max(width, MIN_WIDTH), max(height, MIN_HEIGHT)
    lines = [f"scand top: cannot reach the daemon at {address}", f"  {error}", "",
             "  retrying every second (is scand running? is --socket right?)"]
    if status:
        lines += [""] * (height - 1 - len(lines)) + [status]
    return [line[:width] for line in lines[:height]]
