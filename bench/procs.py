"""Start and stop the processes under test: a scand daemon, or a clamd for the baseline.

Every process is tracked by pid: the harness stops what it started (SIGTERM,
a grace period, then SIGKILL), and afterwards kills, by pid only, any child it
saw during the run that is still alive. Nothing is ever killed by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from bench.targets import ask_line

ROOT = Path(__file__).resolve().parent.parent


class Managed:
    """A process this harness started, with every descendant it has seen."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], socket: str, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.socket = socket
        self.log = log
        self.seen: set[int] = set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def track(self) -> None:
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self.seen.add(child.pid)
        except psutil.Error:
            pass

    def wait_ready(self, ping: bytes, pong: bytes, limit: float) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.tail()}")
            try:
                if ask_line(self.socket, ping, 5.0) == pong:
                    self.track()
                    return
            except Exception:  # not up yet, whatever the reason
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer in {limit:g}s: {self.tail()}")

    def tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 20.0) -> int | None:
        self.track()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for pid in sorted(self.seen):  # leftovers, by pid only
            try:
                p = psutil.Process(pid)
                p.kill()
                p.wait(5)
            except psutil.Error:
                pass
        return self.proc.returncode


def start_scand(workdir: Path, engine: str, workers: int, signatures: Path | None,
                config: Path | None, ready_timeout: float = 180.0) -> Managed:
    """``python -m scand.cli serve`` on ``workdir/sophie``; logs to ``workdir/scand.log``."""
    workdir.mkdir(parents=True, exist_ok=True)
    sock = str(workdir / "sophie")
    cmd = [sys.executable, "-m", "scand.cli", "serve", "--socket", sock, "--engine", engine,
           "--workers", str(workers)]
    if signatures is not None:
        cmd += ["--signatures", str(signatures)]
    if config is not None:
        cmd += ["--config", str(config)]
    log = workdir / "scand.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env,
                                cwd=workdir)
    daemon = Managed("scand", proc, sock, log)
    daemon.wait_ready(b"PING\n", b"PONG", ready_timeout)
    return daemon


def clamd_binary() -> str:
    found = shutil.which("clamd") or shutil.which("clamd", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise RuntimeError("clamd not found: install clamav-daemon (bench/run does)")
    return found


def start_clamd(workdir: Path, signatures: Path, ready_timeout: float = 180.0) -> Managed:
    """clamd with the very clamd.conf scand writes for its managed clamd (same limits)."""
    from scand import config as configmod
    from scand.clamd.supervisor import render_conf
    from scand.config import Config

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "tmp").mkdir(exist_ok=True)
    sock = str(workdir / "clamd.sock")
    log = workdir / "clamd.log"
    cfg = configmod.override(Config(), "engine", name="clamd", signatures=str(signatures))
    conf = workdir / "clamd.conf"
    conf.write_text(render_conf(cfg, sock, str(log), str(workdir / "tmp")))
    proc = subprocess.Popen([clamd_binary(), "--foreground", f"--config-file={conf}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    clamd = Managed("clamd", proc, sock, log)
    clamd.wait_ready(b"nPING\n", b"PONG", ready_timeout)
    return clamd
