"""The hostile-input benchmark: cost of the walk on inputs built to make it slow.

``python -m bench.hostile`` writes every case of :mod:`bench.hostile_cases` (each
family at scales 1, 4 and 16) to ``bench/out/hostile-<time>/cases/``, times
``clamscan`` on each file (a tiny signature set: EICAR in an .ndb, so the
anchor is clamscan's parsing, not its signature load), then starts a real
daemon per engine (one worker, no verdict cache) and sends each file as a
path request. Per case it prints the wall seconds, the worker's peak memory
above its resident set before the job (``/proc/<pid>/status`` VmHWM, reset
through ``clear_refs`` before each case), the reply, and the ratio to
clamscan; per family the growth of the time from N to 16N. ``results.json``
keeps everything.

Targets (issue 23): no case over max(2 s, clamscan's time); growth N->16N at
most 20x; worker peak <= 2 x input + 20 MiB. Rows that miss one are flagged.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.hostile_cases import FAMILIES
from bench.procs import ROOT, start_scand
from bench.targets import ask_line

MiB = 1 << 20
SCALES = (1, 4, 16)
EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")


def write_cases(out: Path, families: list[str], scales: tuple[int, ...]) -> list[dict[str, Any]]:
    cases = []
    (out / "cases").mkdir(parents=True, exist_ok=True)
    for name in families:
        group, gen = FAMILIES[name]
        for k in scales:
            path = out / "cases" / f"{name}-{k}.bin"
            data = gen(k)
            path.write_bytes(data)
            cases.append({"family": name, "group": group, "scale": k, "path": str(path),
                          "size": len(data)})
    return cases


def write_sigs(out: Path) -> Path:
    sigs = out / "sigs"
    sigs.mkdir(parents=True, exist_ok=True)
    (sigs / "bench.ndb").write_text(f"Bench.Eicar:0:*:{EICAR.hex()}\n")
    return sigs


def time_clamscan(path: str, sigs: Path, timeout: float) -> tuple[float, str]:
    t0 = time.monotonic()
    try:
        proc = subprocess.run(["clamscan", "--no-summary", "-d", str(sigs), path],
                              capture_output=True, timeout=timeout, check=False)
        reply = proc.stdout.decode(errors="replace").strip().rsplit(": ", 1)[-1]
    except subprocess.TimeoutExpired:
        reply = "timeout"
    return time.monotonic() - t0, reply


def _worker_pid(sock: str) -> int | None:
    stats: dict[str, Any] = json.loads(ask_line(sock, b"STATS\n", 10.0))
    workers = stats.get("workers") or (stats.get("pool") or {}).get("workers") or []
    return int(workers[0]["pid"]) if workers else None


def _status(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak(pid: int) -> None:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _ask(sock: str, path: str, timeout: float) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(sock)
        conn.sendall(path.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            buf += chunk
    return buf.decode(errors="replace").strip()


def run_engine(out: Path, engine: str, sigs: Path, cases: list[dict[str, Any]],
               timeout: float) -> None:
    work = out / f"scand-{engine}"
    work.mkdir(parents=True, exist_ok=True)
    conf = work / "scand.toml"
    conf.write_text(f"[pool]\nscan_timeout = {timeout}\n\n[cache]\nbackend = \"none\"\n")
    name, _, parser = engine.partition("-")  # clamav-libclamav: clamav.mail_parser
    if parser:
        conf.write_text(conf.read_text() + f'\n[clamav]\nmail_parser = "{parser}"\n')
    daemon = start_scand(work, name, 1, sigs, conf)
    try:
        for case in cases:
            pid = _worker_pid(daemon.socket)
            if pid is not None:
                _reset_peak(pid)
            before = _status(pid, "VmRSS") if pid else 0
            t0 = time.monotonic()
            try:
                reply = _ask(daemon.socket, case["path"], timeout + 30)
            except OSError as exc:
                reply = f"error:{exc}"
            took = time.monotonic() - t0
            peak = _status(pid, "VmHWM") if pid else 0
            case[engine] = {"s": round(took, 3), "peak": max(0, peak - before) if peak else None,
                            "reply": reply}
            _line(case, engine)
    finally:
        daemon.stop()


def _flags(case: dict[str, Any], engine: str) -> str:
    r = case[engine]
    flags = []
    if r["s"] > max(2.0, case["clamscan"]["s"]):
        flags.append("SLOW")
    if r["peak"] is not None and r["peak"] > 2 * case["size"] + 20 * MiB:
        flags.append("MEM")
    return ",".join(flags)


def _line(case: dict[str, Any], engine: str) -> None:
    r = case[engine]
    ratio = r["s"] / max(case["clamscan"]["s"], 1e-3)
    peak = "?" if r["peak"] is None else f"{r['peak'] / MiB:7.1f}"
    print(f"{engine:8} {case['family']:28} x{case['scale']:<3} {case['size'] / MiB:6.2f}MiB "
          f"{r['s']:8.3f}s peak+{peak}MiB clamscan {case['clamscan']['s']:6.3f}s "
          f"ratio {ratio:7.1f} {r['reply'][:28]:28} {_flags(case, engine)}", flush=True)


def growth(cases: list[dict[str, Any]], engine: str) -> dict[str, float]:
    by: dict[str, dict[int, float]] = {}
    for case in cases:
        if engine in case:
            by.setdefault(case["family"], {})[case["scale"]] = case[engine]["s"]
    return {fam: round(t[16] / max(t[1], 0.01), 1) for fam, t in by.items() if 1 in t and 16 in t}


def summary(cases: list[dict[str, Any]], engines: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for engine in engines:
        rows = [c for c in cases if engine in c]
        worst = sorted(rows, key=lambda c: -c[engine]["s"])[:10]
        grow = growth(cases, engine)
        out[engine] = {
            "cases": len(rows),
            "slow": sum(1 for c in rows if "SLOW" in _flags(c, engine)),
            "mem": sum(1 for c in rows if "MEM" in _flags(c, engine)),
            "growth_over_20": sorted(f for f, g in grow.items() if g > 20),
            "worst": [(c["family"], c["scale"], c[engine]["s"], c["clamscan"]["s"],
                       c[engine]["reply"]) for c in worst],
            "growth": grow,
            "peak_max_mib": round(max((c[engine]["peak"] or 0) for c in rows) / MiB, 1)
            if rows else 0,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engines", default="builtin,clamav",
                    help="builtin, clamav, clamav-scand, clamav-libclamav "
                    "(clamav.mail_parser)")
    ap.add_argument("--families", default="", help="comma-separated (default: all)")
    ap.add_argument("--scales", default="1,4,16")
    ap.add_argument("--timeout", type=float, default=30.0, help="the daemon's scan_timeout")
    ap.add_argument("--out", default="")
    ap.add_argument("--clamscan-from", default="", metavar="RESULTS",
                    help="reuse clamscan's times from an earlier results.json (same cases)")
    args = ap.parse_args(argv)
    families = [f for f in args.families.split(",") if f] or list(FAMILIES)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        ap.error(f"unknown families: {unknown}")
    scales = tuple(int(s) for s in args.scales.split(","))
    engines = [e for e in args.engines.split(",") if e]
    out = Path(args.out) if args.out else ROOT / "bench" / "out" / time.strftime(
        "hostile-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    sigs = write_sigs(out)
    cases = write_cases(out, families, scales)
    earlier: dict[tuple[str, int], dict[str, Any]] = {}
    if args.clamscan_from:
        for old in json.loads(Path(args.clamscan_from).read_text())["cases"]:
            earlier[(old["family"], old["scale"])] = old["clamscan"]
    for case in cases:
        known = earlier.get((case["family"], case["scale"]))
        if known is not None:
            case["clamscan"] = known
            continue
        took, reply = time_clamscan(case["path"], sigs, 300)
        case["clamscan"] = {"s": round(took, 3), "reply": reply}
    for engine in engines:
        run_engine(out, engine, sigs, cases, args.timeout)
    result = {"cases": cases, "summary": summary(cases, engines), "load": os.getloadavg()}
    (out / "results.json").write_text(json.dumps(result, indent=1))
    for engine, s in result["summary"].items():
        print(f"\n== {engine}: {s['slow']}/{s['cases']} over max(2 s, clamscan); "
              f"{s['mem']} over the memory target; peak max +{s['peak_max_mib']} MiB")
        print("   growth N->16N over 20x:", ", ".join(
            f"{f} {s['growth'][f]}x" for f in s["growth_over_20"]) or "none")
        for fam, k, took, anchor, reply in s["worst"][:5]:
            print(f"   worst: {fam} x{k}: {took:.2f}s (clamscan {anchor:.2f}s) {reply[:40]}")
    print(f"\nresults: {out / 'results.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
