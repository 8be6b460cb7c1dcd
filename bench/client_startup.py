"""CPU per message of the MTA clients, against the interpreter's own floor.

Issue 17/7 (6/7), acceptance 3. Each client runs once per message, so what it
costs is one process: start-up, the scan request, and handing the message on.
This starts a scand daemon (built-in engine, one worker) on a socket in a
temporary directory and runs, interleaved, N times each:

  * floor: ``python3 -I -S -c pass`` (the same interpreter)
  * each of scand-queue, scand-qfilter, scand-pipe, scand-scan
      - as the console script installing the project put beside this
        interpreter (``<venv>/bin/scand-queue``), and
      - as the single file the docs tell admins to copy (built by
        clients/build.py; run by its ``#!/usr/bin/env -S python3 -IS`` line
        with ``python3`` resolving to the same interpreter), compiled on
        every run as any script is, and
      - as ``scand-queue --install PREFIX`` installs it (a stub that
        imports the same file, byte-compiled: what docs/CLIENTS.md tells a
        qmail admin to do)

with a 1 KB clean message on descriptor 0 (and, when ClamAV is installed,
``clamdscan --no-summary FILE`` against a clamd with a one-line database: the
C client, for reference; its own CPU, not clamd's). The real qmail-queue and
sendmail are ``/bin/true`` here (their own cost is an MTA's, not the client's,
and is a few hundred microseconds). CPU is user + system time of the process and its
children, from wait4(2). Reports the median of each and its ratio to the
floor (the target: at most 2x). ``--old DIR`` adds the single files found in
DIR (``scand_queue.py`` ...) and pip's entry-point wrapper around them, for a
before/after comparison (``git archive <commit> clients | tar -x -C /tmp/old``).

Usage: python bench/client_startup.py [--runs N] [--old DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from clients import build  # noqa: E402 - after the path is set

CLIENTS = ("scand-queue", "scand-qfilter", "scand-pipe", "scand-scan")
# Built from halves: this file must not itself be an EICAR test file.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MESSAGE = (b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: invoice\r\n\r\n"
           + b"Please find the invoice attached. " * 30 + b"\r\n")


def wait_for_ping(path: str, proc: subprocess.Popen[bytes], limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"scand exited {proc.returncode}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(path)
                s.sendall(b"PING\n")
                if s.recv(16).startswith(b"PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{path} did not answer within {limit}s")


def cpu_ms(cmd: list[str], message: Path, env: dict[str, str]) -> float:
    """User + system CPU of one run (the process and what it waited for), in ms."""
    with open(message, "rb") as stdin:
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{cmd}: exit {code}: {err!r}")
    return (usage.ru_utime + usage.ru_stime) * 1000


def start_clamd(work: Path) -> tuple[subprocess.Popen[bytes], list[str]] | None:
    """clamd with a one-line database, and the clamdscan command (the C reference)."""
    clamd = shutil.which("clamd", path="/usr/sbin:/usr/bin")
    clamdscan = shutil.which("clamdscan", path="/usr/bin:/usr/sbin")
    if not (clamd and clamdscan):
        return None
    db = work / "db"
    db.mkdir()
    (db / "bench.hdb").write_text(
        f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Eicar-Test-Signature\n")
    conf = work / "clamd.conf"
    conf.write_text(f"LocalSocket {work}/clamd.sock\nDatabaseDirectory {db}\nForeground yes\n"
                    f"LogFile {work}/clamd.log\n" + ("User root\n" if os.geteuid() == 0 else ""))
    with open(work / "clamd.out", "wb") as log:
        proc = subprocess.Popen([clamd, "-c", str(conf)], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
    wait_for_ping(f"{work}/clamd.sock", proc)
    return proc, [clamdscan, f"--config-file={conf}", "--no-summary"]


def client_args(name: str, sample: Path) -> list[str]:
    return {"scand-queue": [], "scand-qfilter": [],
            "scand-pipe": ["-f", "alice@example.org", "--", "bob@example.net"],
            "scand-scan": [str(sample)]}[name]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50, help="runs per command (default 50)")
    parser.add_argument("--old", metavar="DIR", help="also time the single files in DIR")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    python = os.path.realpath(sys.executable)
    work = Path(tempfile.mkdtemp(prefix="scand-bench-", dir="/tmp"))
    # `python3` on PATH is this interpreter (a pyenv shim is a shell script: not the client).
    pybin = work / "bin"
    pybin.mkdir()
    (pybin / "python3").symlink_to(python)
    proc = None
    clamd = None
    try:
        sample = work / "clean.eml"
        sample.write_bytes(MESSAGE)
        built = work / "built"
        build.build(built)
        for name in CLIENTS:  # the documented install: a stub + the file, byte-compiled
            subprocess.run([python, "-I", "-S", str(built / name), "--install",
                            str(work / "prefix")], check=True, stdout=subprocess.DEVNULL)
        sock = str(work / "scand.sock")
        env = {"PATH": f"{pybin}:/usr/bin:/bin", "SCAND_SOCKET": sock, "SCAND_SYSLOG": "0",
               "SCAND_QMAILQUEUE": "/bin/true", "SCAND_SENDMAIL": "/bin/true"}
        with open(work / "scand.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "scand.cli", "serve", "--socket", sock, "--workers", "1",
                 "--engine", "builtin"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": str(ROOT)})
        wait_for_ping(sock, proc)
        cmds: dict[str, list[str]] = {"floor: python3 -I -S -c pass": [python, "-I", "-S", "-c",
                                                                       "pass"]}
        bindir = Path(sys.prefix) / "bin"
        for name in CLIENTS:
            extra = client_args(name, sample)
            if (bindir / name).exists():
                cmds[f"{name} (console script)"] = [str(bindir / name), *extra]
            cmds[f"{name} (single file)"] = [str(built / name), *extra]
            cmds[f"{name} (single file --install)"] = [str(work / "prefix" / "bin" / name), *extra]
            old = Path(args.old or "/nonexistent") / (name.replace("-", "_") + ".py")
            if args.old and old.exists():
                cmds[f"{name} (before: single file)"] = [python, "-I", "-S", str(old), *extra]
                # The entry-point wrapper pip wrote before: site-packages, `re`, the package.
                wrapper = (f"import re, sys; sys.path.insert(0, {str(old.parent.parent)!r}); "
                           f"from clients.{old.stem} import main; sys.exit(main())")
                cmds[f"{name} (before: console script)"] = [sys.executable, "-c", wrapper,
                                                            *extra]
        clamd = start_clamd(work)
        if clamd is not None:
            cmds["clamdscan (C, the reference)"] = [*clamd[1], str(sample)]
        for cmd in cmds.values():  # warm the caches
            cpu_ms(cmd, sample, env)
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.runs):
            for name, cmd in cmds.items():
                times[name].append(cpu_ms(cmd, sample, env))
    finally:
        for p in (proc, clamd[0] if clamd else None):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(15)
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    floor = next(iter(medians.values()))
    print(f"median CPU per run (user+sys), {args.runs} interleaved runs each, {python}:")
    for name, ms in medians.items():
        print(f"  {name:40s} {ms:6.2f} ms  {ms / floor:4.2f}x floor")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"runs": args.runs, "python": python, "median_cpu_ms": medians,
             "ratio_to_floor": {n: m / floor for n, m in medians.items()}}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
