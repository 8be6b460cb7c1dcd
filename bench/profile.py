"""Where scand's CPU goes, per message: daemon, workers, clamd, and inside libclamav.

    python -m bench.profile [--sides clamav,clamd,clamd-direct] [--dbs tiny,large]
                            (also tiny-phish, large-phish: plus a small .pdb)
                            [--messages 1000] [--perf] [--cprofile]

For each side and signature set: start it (scand with the verdict cache off, or
clamd on scand's clamd.conf), warm it up, then send every message of the bench
corpus once (``--messages``, 4 persistent clients, by path) and read each
process's CPU (``/proc/<pid>/stat``: utime + stime, plus cutime + cstime for
children it reaped) before and after. That is the robust figure on a shared
host: CPU per message by role (daemon, zygote, worker, clamd), whatever else
runs on the machine.

``--perf`` samples every process of the side with ``perf record -e cpu-clock``
during the pass and splits each role's samples into buckets: Python (the
interpreter), libclamav (by the nearest exported symbol: matching, MIME
decoding, hashing, fmap, other; libclamav ships without a symbol table, so a
static function counts under the exported one before it), the kernel (file
system work: temp files; the rest), libc, and other libraries.

``--pyspy`` samples the daemon's Python stacks with py-spy (non-blocking) and
prints its top functions by own and inclusive samples. py-spy counts a process
that was preempted (woken peers run first on 2 CPUs) as busy, so a write that
wakes a worker weighs more here than in CPU time: read it for what runs, and
CPU per message for what it costs.

``--cprofile`` runs, in this process, the worker's own Python path (one
Scanner on the engine, the same config; for ``clamd``, against a clamd started
for it) over the same messages under cProfile
and prints its top functions by own time: the Python side of a worker without
the IPC.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import corpus
from bench.bench_clamav import sigdir_for, start_clamd
from bench.procs import Managed, start_scand
from bench.targets import make_target

OUT = Path(__file__).resolve().parent / "out"
HZ = os.sysconf("SC_CLK_TCK")
PERF_FREQ = 1999
MIME = ("message", "blob", "base64", "decodeLine", "text", "html", "tableFind", "cli_mbox",
        "uuencode", "rfc822", "mbox")
MATCH = ("cli_ac_", "cli_bm_", "cli_pcre", "cli_scan_buff", "cli_scanbuff", "cli_lsig",
         "matcher", "cli_magic_scan_buff")
HASH = ("hash", "sha", "md5", "SHA", "MD5")
FILES = ("shmem", "ext4", "unlink", "open", "dentry", "inode", "vfs_", "path_", "filename",
         "d_alloc", "fsnotify", "file", "lookup", "truncate", "mkdir", "close", "__fput",
         "getname", "dput", "iput", "link_path", "do_sys", "mntput", "security_")


def proc_cpu(pid: int) -> float:
    """CPU seconds of ``pid``: its own plus the children it reaped."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / HZ


def descendants(pid: int) -> dict[int, str]:
    """Every live descendant of ``pid`` with its role (the daemon itself included)."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                text = fh.read()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        names[int(entry)] = comm
    roles = {pid: "clamd" if "clamd" in names.get(pid, "") else "daemon"}
    todo = [(pid, 0)]
    while todo:
        parent, depth = todo.pop()
        for child in children.get(parent, []):
            if "clamd" in names.get(child, ""):
                roles[child] = "clamd"
            elif names.get(child) in ("perf",):
                continue
            else:
                roles[child] = "zygote" if depth == 0 else "worker"
            todo.append((child, depth + 1))
    return roles


def snapshot(pids: dict[int, str]) -> dict[int, float]:
    return {pid: proc_cpu(pid) for pid in pids}


def drive(kind: str, sock: str, paths: list[str], clients: int) -> tuple[int, float]:
    """Send every path once over ``clients`` persistent connections; (errors, seconds)."""
    lock = threading.Lock()
    queue = list(reversed(paths))
    errors = [0]

    def client() -> None:
        target = make_target(kind, sock, "path", True, 120.0)
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    path = queue.pop()
                try:
                    reply = target.scan(path)
                except Exception:
                    reply = b"-1:error"
                if reply.startswith(b"-1:") and b"too-large" not in reply:
                    with lock:
                        errors[0] += 1
        finally:
            target.close()

    t0 = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors[0], time.monotonic() - t0


def bucket(role_dso: str, sym: str) -> str:
    dso = os.path.basename(role_dso)
    if dso.startswith("libpython") or dso == "python3.11" or dso.startswith("python"):
        return "python"
    if dso.startswith("libclamav"):
        if any(m in sym for m in MATCH):
            return "libclamav: matching"
        if any(m in sym for m in MIME):
            return "libclamav: MIME/decoding"
        if any(m in sym for m in HASH):
            return "libclamav: hashing"
        if "fmap" in sym:
            return "libclamav: fmap"
        return "libclamav: other"
    if "kernel" in dso:
        return "kernel: files" if any(m in sym for m in FILES) else "kernel: other"
    if dso.startswith("libc.so") or dso.startswith("libc-"):
        return "libc"
    if dso == "clamd":
        return "clamd binary"
    return "other: " + dso.split(".")[0]


def perf_split(data: Path, roles: dict[int, str], messages: int) -> dict[str, Any]:
    """perf samples -> ms of CPU per message, by role and bucket (and libclamav's top symbols)."""
    out = subprocess.run(["perf", "script", "-i", str(data), "-F", "pid,ip,sym,dso"],
                         capture_output=True, text=True, check=False).stdout
    counts: Counter[tuple[str, str]] = Counter()
    clam_syms: Counter[str] = Counter()
    for line in out.splitlines():
        parts = line.split(None, 2)
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        pid, rest = int(parts[0]), parts[2]
        dso = rest[rest.rfind("(") + 1:rest.rfind(")")] if "(" in rest else "?"
        sym = rest[:rest.rfind("(")].strip() if "(" in rest else rest
        sym = sym.split("+")[0]
        role = roles.get(pid, "other")
        b = bucket(dso, sym)
        counts[(role, b)] += 1
        if b.startswith("libclamav"):
            clam_syms[sym] += 1
    per = 1000.0 / PERF_FREQ / max(messages, 1)
    split: dict[str, dict[str, float]] = {}
    for (role, b), n in counts.most_common():
        split.setdefault(role, {})[b] = round(n * per, 3)
    total = sum(clam_syms.values()) or 1
    return {"ms_per_msg": split,
            "libclamav_top": {s: round(n * 100 / total, 1) for s, n in clam_syms.most_common(12)}}


def start_side(side: str, workdir: Path, sigdir: Path, workers: int, extra: str = "") -> Managed:
    if side == "clamd-direct":
        return start_clamd(workdir, sigdir, False, False, "/dev/shm")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "scand.toml"
    config.write_text('[cache]\nbackend = "none"\n' + extra.replace("\\n", "\n"))
    return start_scand(workdir, side, workers, sigdir, config, ready_timeout=600.0)


def profile_side(side: str, db: str, sigdir: Path, paths: list[str], args: argparse.Namespace,
                 base: Path) -> dict[str, Any]:
    workdir = base / f"{db}-{side}"
    proc = start_side(side, workdir, sigdir, args.workers, args.toml)
    kind = "clamd" if side == "clamd-direct" else "scand"
    try:
        drive(kind, proc.socket, paths[: args.warmup], args.clients)
        roles = descendants(proc.pid)
        perf = None
        if args.perf:
            perf = subprocess.Popen(
                ["perf", "record", "-q", "-e", "cpu-clock", "-F", str(PERF_FREQ), "-o",
                 str(workdir / "perf.data"), "-p", ",".join(map(str, roles))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        spy = None
        if args.pyspy and kind == "scand":
            spy = subprocess.Popen(
                [str(Path(sys.executable).with_name("py-spy")), "record", "--nonblocking",
                 "-r", "1000", "-f", "raw", "-o", str(workdir / "daemon.pyspy"),
                 "-p", str(proc.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        before = snapshot(roles)
        errors, wall = drive(kind, proc.socket, paths, args.clients)
        after = snapshot(roles)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
        proc.track()
    finally:
        proc.stop()
    n = len(paths)
    cpu: dict[str, float] = {}
    for pid, role in roles.items():
        cpu[role] = cpu.get(role, 0.0) + after[pid] - before[pid]
    row: dict[str, Any] = {
        "side": side, "db": db, "messages": n, "errors": errors,
        "msgs_per_s": round(n / wall, 1),
        "cpu_ms_per_msg": {k: round(v * 1000 / n, 3) for k, v in sorted(cpu.items())},
        "server_cpu_ms_per_msg": round(sum(cpu.values()) * 1000 / n, 3),
        "load_avg": os.getloadavg()[0],
    }
    if args.perf:
        row["perf"] = perf_split(workdir / "perf.data", roles, n)
    if args.pyspy and kind == "scand":
        row["pyspy"] = pyspy_split(workdir / "daemon.pyspy", args.top)
    return row


def pyspy_split(stacks: Path, top: int) -> dict[str, Any]:
    """py-spy's folded stacks of the daemon -> the top functions by own samples and by
    inclusive samples, in % of the daemon's busy samples (those in epoll_wait are left out:
    the daemon waits there, idle)."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        if "get_events" in stack:
            continue  # waiting in epoll_wait: idle (py-spy cannot tell)
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].split(":")[0].rstrip(")")
                  for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    pct = 100.0 / max(total, 1)
    return {"samples": total,
            "own": {f: round(n * pct, 1) for f, n in own.most_common(top)},
            "inclusive": {f: round(n * pct, 1) for f, n in incl.most_common(top)}}


def cprofile_worker(side: str, sigdir: Path, paths: list[str], top: int,
                    clamd_socket: str = "") -> str:
    """The worker's Python path in this process (no IPC) under cProfile; for the
    clamd engine, against the clamd on ``clamd_socket``."""
    import io

    from scand import config as configmod
    from scand.config import Config
    from scand.engines.base import load_engine
    from scand.worker.scanner import Scanner

    cfg = configmod.override(Config(), "engine", name=side, signatures=str(sigdir))
    cfg = configmod.override(cfg, "cache", backend="none")
    if clamd_socket:
        cfg = configmod.override(cfg, "clamd", sockets=[clamd_socket])
    engine = load_engine(cfg)
    scanner = Scanner(engine, cfg)
    prof = cProfile.Profile(time.process_time)  # CPU, not wall: the host is shared
    t0 = time.process_time()
    prof.enable()
    for path in paths:
        scanner.scan_path(path)
    prof.disable()
    cpu = time.process_time() - t0
    engine.close()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return (f"{side}: {cpu * 1000 / len(paths):.3f} ms CPU per message in-process "
            f"(under cProfile)\n" + buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sides", default="clamav,clamd,clamd-direct")
    ap.add_argument("--dbs", default="tiny,large")
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=0, help="scand workers (0: its default)")
    ap.add_argument("--toml", default="", help="more scand config (TOML; \\n for new lines), "
                    "e.g. '[clamd]\\ntransfer = \"stream\"'")
    ap.add_argument("--perf", action="store_true", help="split each role's CPU with perf")
    ap.add_argument("--pyspy", action="store_true",
                    help="sample the daemon's Python stacks with py-spy (its top functions)")
    ap.add_argument("--cprofile", action="store_true",
                    help="also profile the worker's Python path in-process")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    corpus_dir = OUT / "corpus-s1-n1000"
    corpus.load_or_generate(corpus_dir, 1000, 1)
    tiny = corpus.write_signatures(corpus_dir / "sigs")
    manifest = json.loads((corpus_dir / "manifest.json").read_text())
    paths = [str((corpus_dir / m["path"]).resolve()) for m in manifest["messages"]]
    paths = (paths * (args.messages // len(paths) + 1))[: args.messages]
    base = OUT / f"{time.strftime('%Y%m%d-%H%M%S')}-profile"
    base.mkdir(parents=True)
    rows = []
    for db in args.dbs.split(","):
        sigdir = sigdir_for(db, tiny)
        for side in args.sides.split(","):
            row = profile_side(side, db, sigdir, paths, args, base)
            print(json.dumps(row))
            rows.append(row)
            if args.cprofile and side == "clamav":
                print(cprofile_worker(side, sigdir, paths, args.top))
            elif args.cprofile and side == "clamd":  # against a clamd of its own, on tmpfs
                clamd = start_clamd(base / f"{db}-cprofile-clamd", sigdir, False, False,
                                    "/dev/shm")
                try:
                    print(cprofile_worker(side, sigdir, paths, args.top, clamd.socket))
                finally:
                    clamd.stop()
    (base / "profile.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {base}/profile.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
