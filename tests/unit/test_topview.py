"""scand top's layout: a STATS dict -> lines that fit the terminal."""

from __future__ import annotations

import copy
from typing import Any

from scand import topview


def worker(pid: int, **kw: Any) -> dict[str, Any]:
    return {"pid": pid, "rss": 40 << 20, "pss": 20 << 20, "private": 6 << 20, "jobs": 1234,
            "age": 3725.0, "state": "busy", "lifecycle": "serving", "retiring": None,
            "generation": 2, **kw}


STATS: dict[str, Any] = {
    "uptime": 93784.0, "requests": 5000, "commands": 7, "bytes": 3 << 30,
    "verdicts": {"clean": 4900, "infected": 90, "busy": 6, "timeout": 4},
    "latency_ms": {"p50": 1.25, "p90": 4.5, "p99": 19.0, "max": 250.0},
    "cache": {"hits": 25, "misses": 75}, "version": "0.1.0",
    "engine": {"name": "clamav/1.4.6", "signatures": "sigs=3627104", "detail": "",
               "reason": "auto: clamav (libclamav 1.4.6, /var/lib/clamav: 3 files)"},
    "pool": {"size": 2, "live": 2, "idle": 1, "busy": 1, "queue": 3,
             "rss_total": 80 << 20, "pss_total": 40 << 20, "private_total": 12 << 20,
             "jobs_total": 5000, "spawned_total": 4,
             "recycles": {"rss": 1, "jobs": 2, "memory": 0, "timeout": 4, "crash": 0,
                          "cancel": 0, "reload": 2},
             "last_spawn_ms": 2.1,
             "workers": [worker(101), worker(102, state="idle", retiring="jobs")]},
}


def test_a_two_worker_daemon_in_80x24() -> None:
    lines = topview.render(STATS, 80, 24, rate=12.34, status="q quit")
    assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
    text = "\n".join(lines)
    assert lines[0].startswith("scand 0.1.0  up 1d02h  engine clamav/1.4.6 sigs=3627104")
    assert "generation 2" in lines[0]
    assert lines[1] == "  auto: clamav (libclamav 1.4.6, /var/lib/clamav: 3 files)"
    assert "requests 5000  12.3/s  commands 7  bytes 3.00G" in text
    assert "latency ms  p50 1.25  p90 4.5  p99 19  max 250" in text
    assert "verdicts  clean 4900  infected 90  busy 6  timeout 4" in text
    assert "queue 3  workers 2/2 (busy 1, idle 1)" in text
    assert "recycles  rss 1  jobs 2  memory 0  timeout 4  crash 0  cancel 0  reload 2" in text
    assert "cache  hits 25  misses 75  hit rate 25.0%" in text
    assert "memory  private 12.0M  pss 40.0M  rss 80.0M" in text
    assert topview.WORKER_HEADER in lines
    assert "     101 busy       2     6.0M    20.0M    1234    1h02m  serving" in lines
    assert "     102 idle       2     6.0M    20.0M    1234    1h02m  retiring: jobs" in lines
    assert lines[-1] == "q quit"


def test_one_reply_shows_the_average_rate() -> None:
    text = "\n".join(topview.render(STATS))
    assert f"{5000 / 93784:.1f}/s avg" in text


def test_many_workers_are_cut_to_the_height_and_say_so() -> None:
    stats = copy.deepcopy(STATS)
    stats["pool"]["workers"] = [worker(1000 + i) for i in range(40)]
    lines = topview.render(stats, 80, 24, status="q quit")
    assert len(lines) == 24 and lines[-1] == "q quit"
    shown = [line for line in lines if line.strip().startswith("10")]
    assert lines[-2] == f"  ... {40 - len(shown)} more workers (a taller terminal shows them)"
    assert len(shown) >= 5
    tall = topview.render(stats, 80, 70)
    assert sum(1 for line in tall if line.strip().startswith("10")) == 40


def test_narrow_and_tiny_terminals_never_overflow() -> None:
    for width, height in ((40, 8), (20, 3), (132, 50)):
        lines = topview.render(STATS, width, height, status="q quit")
        assert all(len(line) <= max(width, topview.MIN_WIDTH) for line in lines)
        assert len(lines) <= max(height, topview.MIN_HEIGHT)


def test_an_older_or_smaller_reply_still_renders() -> None:
    lines = topview.render({"requests": 1, "uptime": 0})
    assert lines[0].startswith("scand ?  up 0s  engine ?")
    assert "verdicts  none" in "\n".join(lines)
    assert "cache  hits 0  misses 0  hit rate -" in "\n".join(lines)


def test_managed_clamd_line() -> None:
    stats = {**STATS, "clamd": {"mode": "managed", "version": "ClamAV 1.4.6", "pid": 77,
                                "rss": 300 << 20, "restarts": 1,
                                "switches": {"rss": 2, "reload": 1}}}
    text = "\n".join(topview.render(stats, 100, 30))
    assert "clamd managed ClamAV 1.4.6  pid 77  rss 300.0M  restarts 1  switches 3" in text


def test_unreachable_screen() -> None:
    lines = topview.unreachable("/var/run/sophie", "No such file or directory", 80, 24,
                                status="q quit")
    assert lines[0] == "scand top: cannot reach the daemon at /var/run/sophie"
    assert lines[1] == "  No such file or directory"
    assert "retrying" in lines[3] and len(lines) == 24 and lines[-1] == "q quit"


def test_sizes_and_durations() -> None:
    assert [topview.size(n) for n in (512, 3277, 64 << 20, 3 << 30)] == \
        ["512B", "3.2K", "64.0M", "3.00G"]
    assert [topview.duration(s) for s in (42, 307, 11040, 190800)] == \
        ["42s", "5m07s", "3h04m", "2d05h"]


def test_self_check_line() -> None:
    check = {"directory": "/var/lib/clamav", "interval": 600.0, "checks": 12, "reloads": 1,
             "last": "kept", "kept_broken": True}
    text = "\n".join(topview.render({**STATS, "self_check": check}, 100, 30))
    assert ("self-check /var/lib/clamav every 600s  checks 12  reloads 1  "
            "BROKEN SET KEPT (fix the directory)") in text
    check = {**check, "kept_broken": False, "last": "done"}
    text = "\n".join(topview.render({**STATS, "self_check": check}, 100, 30))
    assert "self-check /var/lib/clamav every 600s  checks 12  reloads 1" in text
    assert "BROKEN" not in text
    off = {"directory": None, "interval": 0, "checks": 0, "reloads": 0, "last": None,
           "kept_broken": False}
    assert "self-check" not in "\n".join(topview.render({**STATS, "self_check": off}))
