"""The mail bomber: throughput, latency and memory of scand (or clamd) under mail load.

    python -m bench.bomber --duration 60          # 60 s mixed run, built-in engine
    bench/run --duration 60                       # the same on a fresh clone (installs first)

One run: build (or reuse) the seeded corpus, write a signature set naming its
payloads, start the daemon under test (scand, or clamd for the baseline) on a
socket in the output directory, drive it with N client threads, sample RSS
every 250 ms, stop what it started (by pid), and write into the output
directory: ``summary.json``, ``rss.csv``, ``latency.csv``, ``report.png`` and
the daemon's log. ``--socket`` points at a running daemon instead.

Exit status: 0; 1 if any reply was a miss (an infected or banned message
answered 0, a clean one answered 1:) or got no verdict at all; 2 on bad usage.
See bench/README.md for the method and the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench import corpus, report
from bench.driver import Driver, Item, Options, Planner, item_for, parse_chaos
from bench.probe import probe
from bench.procs import Managed, start_clamd, start_scand
from bench.sampler import Sampler
from bench.targets import ask_line, peer_pid
from bench.verdicts import DEFAULT_PROFILE, PROFILES, Profile, visible

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
FLOOD_COPIES = 256


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.bomber", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    t = ap.add_argument_group("target")
    t.add_argument("--target", choices=("scand", "clamd"), default="scand",
                   help="scand, or clamd directly (the baseline); default scand")
    t.add_argument("--engine", choices=("builtin", "chaos", "clamav", "clamd"),
                   help="scand's engine when the harness starts it (default: the --config "
                        "file's [engine] name, else builtin; chaos with --chaos; clamav = "
                        "libclamav in the workers; clamd = scand's managed clamd)")
    t.add_argument("--workers", type=int, default=0,
                   help="scand workers (default 0: scand's own default, one per CPU for "
                        "builtin, two per CPU for clamav and clamd)")
    t.add_argument("--config", type=Path, help="extra scand config file (TOML)")
    t.add_argument("--socket", help="use this running daemon (scand, or clamd with "
                                    "--target clamd) instead of starting one")
    t.add_argument("--clamd-tmp", default="", metavar="DIR",
                   help="--target clamd: parent of clamd's TemporaryDirectory (default: the "
                        "run directory, on disk; /dev/shm = tmpfs)")
    t.add_argument("--no-cache", action="store_true",
                   help="every verdict cache off: scand's [cache] backend none, clamd's "
                        "DisableCache yes (default: each daemon's own default)")
    t.add_argument("--sides", metavar="LIST",
                   help="side by side in one command, rounds alternating: a comma list of "
                        "scand:<engine> and clamd:<disk|tmpfs>[+cache], e.g. "
                        "scand:builtin,scand:clamav,scand:clamd,clamd:disk,clamd:tmpfs "
                        "(see bench.sides)")
    t.add_argument("--rounds", type=int, default=1, help="--sides: rounds (default 1)")
    load = ap.add_argument_group("load")
    load.add_argument("-c", "--concurrency", type=int, help="client threads (default 16; "
                                                             "64 with --flood)")
    load.add_argument("--connect", choices=("persistent", "per-message"),
                      help="one connection per client, or one per message "
                           "(default persistent; per-message with --flood)")
    load.add_argument("--transfer", choices=("path", "stream"), default="path",
                      help="send the spool path (scand path / clamd SCAN) or the bytes "
                           "(scand STREAM / clamd INSTREAM); default path")
    load.add_argument("--duration", type=float, help="seconds (default 20 unless --count)")
    load.add_argument("--count", type=int, help="stop after this many messages")
    load.add_argument("--rate", type=float, help="messages per second, all clients together")
    load.add_argument("--warmup", type=float, help="seconds left out of throughput and "
                                                    "latency (default min(5, duration/10))")
    load.add_argument("--timeout", type=float, default=120.0, help="per request, seconds")
    mode = ap.add_argument_group("modes")
    mode.add_argument("--flood", nargs="?", const="auto", metavar="VARIANT",
                      help="the Klez scenario: copies of one infected message only "
                           f"({', '.join(v[0] for v in corpus.INFECTED_VARIANTS)}; "
                           "default: eicar-zip if the profile sees zips, else eicar-raw)")
    mode.add_argument("--chaos", metavar="SPEC",
                      help="mix in chaos-engine markers, e.g. leak:1=0.2,hog:64=0.05,crash=0.01")
    mode.add_argument("--expect", choices=["auto", *sorted(PROFILES)],
                      help="what the engine is judged able to see: "
                           + "; ".join(f"{k}: {v.about}" for k, v in PROFILES.items())
                           + "; auto: probe scand with canaries first (default: "
                           + ", ".join(f"{k} {v}" for k, v in DEFAULT_PROFILE.items()) + ")")
    c = ap.add_argument_group("corpus and output")
    c.add_argument("--corpus-size", type=int, default=1000, help="messages (default 1000)")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--corpus", type=Path, help="corpus directory (default "
                                                 "bench/out/corpus-s<seed>-n<size>)")
    c.add_argument("--corpus-only", action="store_true", help="build the corpus and stop")
    c.add_argument("--out", type=Path, help="output directory (default bench/out/<time>-<run>)")
    c.add_argument("--repeat", type=int, default=1, help="runs (fresh daemon each); "
                                                          "median.json holds the medians")
    c.add_argument("--interval", type=float, default=0.25, help="RSS sampling period, s")
    c.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.clamd_cache = False  # clamd's clean cache: off, as scand's conf writes it
    if args.duration is None and args.count is None:
        args.duration = 20.0
    if args.warmup is None:
        args.warmup = 0.0 if args.duration is None else min(5.0, args.duration / 10)
    flooding = args.flood is not None
    args.concurrency = args.concurrency or (64 if flooding else 16)
    args.connect = args.connect or ("per-message" if flooding else "persistent")
    if args.engine is None and (args.chaos or args.config is None):
        args.engine = "chaos" if args.chaos else "builtin"
    if args.chaos and (args.target != "scand" or args.engine != "chaos"):
        ap.error("--chaos needs --target scand with --engine chaos")
    try:
        args.chaos_spec = parse_chaos(args.chaos or "")
    except ValueError as exc:
        ap.error(str(exc))
    return args


def engine_of(target: str, socket: str) -> str:
    """The engine key of a running daemon, from its VERSION line."""
    if target == "clamd":
        return "clamd-direct"
    words = ask_line(socket, b"VERSION\n").decode().split()
    engine = words[2] if len(words) > 2 else "builtin"
    return "clamd" if engine.startswith("clamd") else engine


def start(args: argparse.Namespace, rundir: Path, sigdir: Path) -> tuple[Managed | None, str]:
    if args.socket:
        return None, args.socket
    if args.target == "clamd":
        proc = start_clamd(rundir / "clamd", sigdir, cache=args.clamd_cache and not args.no_cache,
                           tmp_parent=args.clamd_tmp)
    else:
        config = args.config
        if args.no_cache:
            config = no_cache_config(rundir, args.config)
        proc = start_scand(rundir / "scand", args.engine, args.workers, sigdir, config)
    return proc, proc.socket


def no_cache_config(rundir: Path, base: Path | None) -> Path:
    """``base`` (or an empty config) with ``[cache] backend = "none"``."""
    text = base.read_text() if base is not None else ""
    if "[cache]" in text:
        raise SystemExit("--no-cache with a --config that has a [cache] section: set "
                         "backend there instead")
    out = rundir / "no-cache.toml"
    out.write_text(text + '\n[cache]\nbackend = "none"\n')
    return out


def flood_variant(args: argparse.Namespace, profile: Profile) -> str:
    if args.flood != "auto":
        return str(args.flood)
    layers = dict((v[0], v[3]) for v in corpus.INFECTED_VARIANTS)
    return "eicar-zip" if visible(layers["eicar-zip"], profile) else "eicar-raw"


def run_once(args: argparse.Namespace, manifest: dict[str, Any], corpus_dir: Path,
             sigdir: Path, rundir: Path) -> dict[str, Any]:
    rundir.mkdir(parents=True, exist_ok=True)
    load_before = [round(x, 2) for x in os.getloadavg()]
    proc, socket = start(args, rundir, sigdir)
    sampler: Sampler | None = None
    try:
        engine = engine_of(args.target, socket)
        if args.chaos and engine != "chaos":
            raise SystemExit(f"--chaos needs the chaos engine; {socket} runs {engine}")
        expect = args.expect or DEFAULT_PROFILE[args.target]
        canaries: dict[str, str] = {}
        if expect == "auto" and args.target == "scand":
            profile, canaries = probe(socket, args.transfer, corpus_dir, args.seed)
            print(f"profile {profile.name}: canaries answered "
                  + ", ".join(f"{k} {v}" for k, v in canaries.items()))
        else:
            profile = PROFILES["mail" if expect == "auto" else expect]
        base = str(corpus_dir.resolve())
        variant = flood_variant(args, profile) if args.flood is not None else None
        if variant is not None:
            items = [item_for(base, m, profile)
                     for m in corpus.flood_copies(corpus_dir, variant, FLOOD_COPIES, args.seed)]
        else:
            items = [item_for(base, m, profile) for m in manifest["messages"]]
        chaos: list[tuple[Item, float]] = [
            (item_for(base, corpus.chaos_message(corpus_dir, fault, arg), profile), rate)
            for fault, arg, rate in args.chaos_spec]
        options = Options(args.target, socket, profile, args.concurrency,
                          args.connect == "persistent", args.transfer, args.duration,
                          args.count, args.rate, args.timeout, args.seed)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        t0 = time.monotonic()
        pid = proc.pid if proc else peer_pid(socket)
        if args.target == "scand":
            sampler = Sampler(rundir / "rss.csv", t0, args.interval, scand_socket=socket,
                              daemon_pid=pid)
        else:
            sampler = Sampler(rundir / "rss.csv", t0, args.interval, clamd_pid=pid)
        sampler.start()
        driver = Driver(options, Planner(items, args.seed, args.count, chaos), t0)
        total = args.duration if args.duration is not None else args.count
        progress = report.Progress(total, "s" if args.duration is not None else " msgs")
        res = driver.run(lambda el: progress.show(el, driver.completed(), driver.misses(),
                                                  driver.errors()))
        progress.close()
        elapsed = max(res.done_at, default=time.monotonic() - t0)
        sampler.finish()
        if proc is not None:
            proc.track()
    finally:
        try:
            if sampler is not None and sampler.is_alive():
                sampler.finish()
        finally:
            if proc is not None:
                proc.stop()
    stats = sampler.last_stats or {}
    setup = {
        "command": " ".join(["python -m bench.bomber", *args.argv]),
        "target": args.target, "engine": engine, "profile": profile.name,
        "profile_decodes": sorted(profile.decodes), "profile_policy": profile.policy,
        "canaries": canaries,
        "workers": (stats.get("pool") or {}).get("size"),
        "transfer": args.transfer, "connect": args.connect, "concurrency": args.concurrency,
        "duration": args.duration, "count": args.count, "rate": args.rate,
        "corpus": str(corpus_dir), "corpus_size": manifest["count"],
        "corpus_bytes": manifest["bytes"], "seed": args.seed, "flood": variant,
        "chaos": args.chaos, "cpus": os.cpu_count(), "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "started": started, "python": sys.version.split()[0],
        "version": stats.get("version"),
    }
    summary = report.summarize(res, sampler.ticks, args.warmup, elapsed, sampler.first_stats,
                               sampler.last_stats, setup, sampler.cpu_by_role())
    series = report.per_second(res, elapsed)
    report.write_latency_csv(rundir / "latency.csv", series)
    summary["per_second"] = series
    report.write_json(rundir / "summary.json", summary)
    plotted = not args.no_plot and report.plot(
        rundir / "report.png", sampler.ticks, series,
        f"{setup['command']}  |  {summary['msgs_per_s']} msgs/s, p99 "
        f"{summary['latency_ms']['p99']} ms, misses {summary['misses']}")
    print(report.table(summary))
    png = ", report.png" if plotted else "" if args.no_plot else " (no PNG: pip install matplotlib)"
    print(f"wrote {rundir}/summary.json, rss.csv, latency.csv{png}")
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    corpus_dir = args.corpus or OUT / f"corpus-s{args.seed}-n{args.corpus_size}"
    t = time.monotonic()
    manifest = corpus.load_or_generate(corpus_dir, args.corpus_size, args.seed)
    print(f"corpus {corpus_dir}: {manifest['count']} messages, {manifest['bytes'] / 1e6:.1f} MB "
          f"(ready in {time.monotonic() - t:.1f} s)")
    if args.corpus_only:
        return 0
    sigdir = corpus.write_signatures(corpus_dir / "sigs")
    if args.sides:
        from bench import sides
        return sides.run(args, manifest, corpus_dir, sigdir, run_once)
    name = (f"{args.target}-{args.engine or 'config' if args.target == 'scand' else 'direct'}"
            f"-c{args.concurrency}{'-flood' if args.flood else ''}{'-chaos' if args.chaos else ''}")
    out = args.out or OUT / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    out = out.resolve()  # the daemon and clamd run elsewhere: give them absolute paths
    runs = []
    for n in range(args.repeat):
        rundir = out if args.repeat == 1 else out / f"run-{n + 1}"
        runs.append(run_once(args, manifest, corpus_dir, sigdir, rundir))
    if args.repeat > 1:
        med = report.median_summary(runs)
        (out / "median.json").write_text(json.dumps(med, indent=2) + "\n")
        print(f"median of {args.repeat}: {med['msgs_per_s']} msgs/s, "
              f"p99 {med['latency_ms']['p99']} ms, misses {med['misses']} -> {out}/median.json")
    return 1 if any(report.is_failure(s) for s in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
