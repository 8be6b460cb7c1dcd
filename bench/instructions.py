"""Instructions per message, the figure a loaded host cannot blur (callgrind).

    python -m bench.instructions [--sides clamav,clamd-direct] [--messages 200]

On a shared 2-CPU host CPU time per message moves with the load (cache misses,
context switches); instruction counts do not. Each measurement runs twice under
``valgrind --tool=callgrind``. A daemon (scand's, clamd) counts instructions
only while the first ``--messages`` corpus messages are sent, after start-up
and ``--warmup`` messages (``callgrind_control -i on/off``): its start-up,
signature loading, first-use work (lazy imports) and timers are left out. The
worker's path runs once with the ``--warmup`` messages and once with those and
the ``--messages``; the difference of the two totals is what the messages cost.
Each total is divided by the messages. Per side:

* ``clamd-direct``: clamd (scand's clamd.conf, temp files on /dev/shm), one
  persistent client sending ``zSCAN <path>`` in an ``IDSESSION``;
* ``clamav`` / ``clamd``: scand's daemon (``--engine clamav`` or ``clamd``,
  cache off) with one persistent Sophie client (``daemon``: the daemon process
  alone; valgrind cannot run the zygote, which needs ``pidfd_open``), and the
  worker's path in one process (``worker``: a Scanner on the engine,
  ``scan_path`` per message, the same config; no pipes) for ``clamav``.

Instructions are not time: they leave out cache and TLB misses, which differ
between one clamd process and several workers. Slow (valgrind runs code some
50x slower): 200 messages take minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import corpus
from bench.procs import Managed, clamd_binary
from bench.profile import drive
from bench.targets import ask_line

OUT = Path(__file__).resolve().parent / "out"
ROOT = Path(__file__).resolve().parent.parent
VALGRIND = ["valgrind", "--tool=callgrind"]
WORKER = """
import os, sys
from scand import config as configmod
from scand.config import Config
from scand.engines.base import load_engine
from scand.worker.scanner import Scanner
cfg = configmod.override(Config(), "engine", name="clamav", signatures=sys.argv[1])
cfg = configmod.override(cfg, "cache", backend="none")
engine = load_engine(cfg)
engine.forked()
scanner = Scanner(engine, cfg)
for path in sys.argv[2:]:
    scanner.scan_path(path)
"""


def totals(directory: Path) -> dict[str, int]:
    """Ir per role from the callgrind files in ``directory``."""
    out: dict[str, int] = {}
    for f in directory.glob("cg.*"):
        text = f.read_text(errors="replace")
        cmd = re.search(r"^cmd: (.*)$", text, re.M)
        total = (re.search(r"^totals: (\d+)", text, re.M)
                 or re.search(r"^summary: (\d+)", text, re.M))
        if not cmd or not total:
            continue
        line = cmd.group(1)
        role = ("daemon" if "scand.cli" in line else "clamd" if "clamd" in line
                else "worker")
        out[role] = out.get(role, 0) + int(total.group(1))
    return out


def instrument(pid: int, on: bool, sock: str, ping: bytes) -> None:
    """Turn callgrind's counting on or off in ``pid``. The command runs when the process
    next runs code, so PINGs wake it until ``callgrind_control`` is answered (a PING
    or two counted: some 0.1 % of a run)."""
    ctl = subprocess.Popen(["callgrind_control", "-i", "on" if on else "off", str(pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300.0
    while ctl.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            ask_line(sock, ping, 5.0)
        time.sleep(0.2)
    if ctl.poll() is None:
        ctl.kill()
    if ctl.wait() != 0:
        raise RuntimeError(f"callgrind_control -i {'on' if on else 'off'} {pid} failed")


def run(side: str, sigdir: Path, paths: list[str], workdir: Path,
        warm: list[str] | None = None) -> dict[str, int]:
    """Instructions of ``side`` over ``paths``. A daemon counts only while the paths are
    sent (after start-up and the ``warm`` messages): its timers and the readiness
    PINGs scale with the wall clock, which valgrind and a loaded host stretch."""
    workdir.mkdir(parents=True, exist_ok=True)
    for old in workdir.glob("cg.*"):
        old.unlink()
    vg = [*VALGRIND, f"--callgrind-out-file={workdir}/cg.%p"]
    if side != "worker":
        vg.append("--instr-atstart=no")
    if side == "worker":
        subprocess.run([*vg, sys.executable, "-c", WORKER, str(sigdir), *paths], check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=workdir,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return totals(workdir)
    if side == "clamd-direct":
        from bench.bench_clamav import start_clamd  # its conf, on /dev/shm
        conf_dir = workdir / "conf"
        proc = start_clamd(conf_dir, sigdir, False, False, "/dev/shm")  # writes the conf
        proc.stop()  # (which removes its temp directory: made again for the run below)
        conf_text = (conf_dir / "clamd.conf").read_text()
        tmp = re.search(r"^TemporaryDirectory (.*)$", conf_text, re.M)
        if tmp:
            Path(tmp.group(1)).mkdir(parents=True, exist_ok=True)
        cmd = [*vg, clamd_binary(), "--foreground", f"--config-file={conf_dir / 'clamd.conf'}"]
        sock, ping, pong, kind = str(conf_dir / "clamd.sock"), b"nPING\n", b"PONG", "clamd"
    else:
        (workdir / "scand.toml").write_text('[cache]\nbackend = "none"\n')
        sock = str(workdir / "sophie")
        cmd = [*vg, sys.executable, "-m", "scand.cli", "serve", "--socket", sock, "--engine",
               side, "--signatures", str(sigdir), "--config", str(workdir / "scand.toml")]
        ping, pong, kind = b"PING\n", b"PONG", "scand"
    log = workdir / "daemon.log"
    with open(log, "wb") as fh:
        popen = subprocess.Popen(cmd, stdout=fh, stderr=fh, stdin=subprocess.DEVNULL,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=workdir)
    proc = Managed(side, popen, sock, log)
    proc.wait_ready(ping, pong, 900.0)
    try:
        if warm:
            drive(kind, sock, warm, 1)
        instrument(popen.pid, True, sock, ping)
        drive(kind, sock, paths, 1)
        instrument(popen.pid, False, sock, ping)
    finally:
        proc.stop(grace=300.0)
    return totals(workdir)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sides", default="clamav,clamd-direct")
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20,
                    help="messages sent in both runs first: lazy imports and first-use "
                         "caches are left out of the per-message figure")
    ap.add_argument("--daemon-only", action="store_true",
                    help="clamav: the daemon alone (skip the worker's slow in-process run)")
    args = ap.parse_args(argv)
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:  # a bench tool, not installed by scripts/test
        print(f"bench.instructions needs {', '.join(missing)}: apt-get install valgrind",
              file=sys.stderr)
        return 2
    corpus_dir = OUT / "corpus-s1-n1000"
    corpus.load_or_generate(corpus_dir, 1000, 1)
    sigdir = corpus.write_signatures(corpus_dir / "sigs")
    manifest = json.loads((corpus_dir / "manifest.json").read_text())
    paths = [str((corpus_dir / m["path"]).resolve())
             for m in manifest["messages"]][: args.messages]
    base = OUT / f"{time.strftime('%Y%m%d-%H%M%S')}-instructions"
    # Byte-code compiled now, not in one of the two runs (it would count as messages').
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "scand")], check=True)
    rows: list[dict[str, Any]] = []
    for side in args.sides.split(","):
        per: dict[str, float] = {}
        for what in [side, "worker"] if side == "clamav" and not args.daemon_only else [side]:
            warm = paths[: args.warmup]
            if what == "worker":  # one process over its messages: a run without them
                idle = run(what, sigdir, warm, base / f"{what}-0")
                busy = run(what, sigdir, warm + paths, base / f"{what}-{len(paths)}")
            else:  # counted only while the messages are sent
                idle = {}
                busy = run(what, sigdir, paths, base / f"{what}-{len(paths)}", warm)
            per.update({k: round((busy.get(k, 0) - idle.get(k, 0)) / len(paths) / 1e6, 3)
                        for k in busy})
        row = {"side": side, "messages": len(paths), "mega_ir_per_msg": per,
               "total_mega_ir_per_msg": round(sum(per.values()), 3)}
        print(json.dumps(row))
        rows.append(row)
    base.mkdir(parents=True, exist_ok=True)
    (base / "instructions.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
