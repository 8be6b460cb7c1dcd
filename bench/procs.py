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
        self.cleanup: list[Path] = []  # directories of ours to remove once it stopped

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
        for path in self.cleanup:
            shutil.rmtree(path, ignore_errors=True)
        return self.proc.returncode


def start_scand(workdir: Path, engine: str | None, workers: int, signatures: Path | None,
                config: Path | None, ready_timeout: float = 180.0) -> Managed:
    """``python -m scand.cli serve`` on ``workdir/sophie``; logs to ``workdir/scand.log``.
    ``engine`` None: the config file's ``[engine] name`` (``--engine`` would override it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    sock = str(workdir / "sophie")
    cmd = [sys.executable, "-m", "scand.cli", "serve", "--socket", sock,
           "--workers", str(workers)]
    if engine is not None:
        cmd += ["--engine", engine]
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


def start_clamd(workdir: Path, signatures: Path, ready_timeout: float = 180.0, *,
                cache: bool = False, tmp_parent: str = "", concurrent_reload: bool = False
                ) -> Managed:
    """clamd with the very clamd.conf scand writes for its managed clamd (same limits).

    ``cache``: clamd's clean cache on (``DisableCache no``; scand's conf turns it off).
    ``tmp_parent``: where its TemporaryDirectory goes ("" = ``workdir/tmp``, on disk;
    ``/dev/shm`` = the tmpfs scand's clamav engine picks). ``concurrent_reload``:
    clamd's own default (a second engine loads beside the first on RELOAD)."""
    from scand import config as configmod
    from scand.clamd.supervisor import render_conf
    from scand.config import Config

    workdir.mkdir(parents=True, exist_ok=True)
    tmp = (Path(tmp_parent) / f"bench-clamd-{os.getpid()}-{workdir.name}" if tmp_parent
           else workdir / "tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    sock = str(workdir / "clamd.sock")
    log = workdir / "clamd.log"
    cfg = configmod.override(Config(), "engine", name="clamd", signatures=str(signatures))
    # The one DisableCache line scand's conf writes: clamd keeps the first it reads, so
    # the setting is changed there, never appended.
    cfg = configmod.override(cfg, "clamd", disable_cache=not cache)
    text = render_conf(cfg, sock, str(log), str(tmp))
    if concurrent_reload:
        text = text.replace("ConcurrentDatabaseReload no", "ConcurrentDatabaseReload yes")
    conf = workdir / "clamd.conf"
    conf.write_text(text)
    proc = subprocess.Popen([clamd_binary(), "--foreground", f"--config-file={conf}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    clamd = Managed("clamd", proc, sock, log)
    if tmp_parent:
        clamd.cleanup.append(tmp)
    clamd.wait_ready(b"nPING\n", b"PONG", ready_timeout)
    return clamd


class RedisServer:
    """One private redis-server on ``<dir>/redis.sock`` (no TCP, no persistence), by pid."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.sock = str(directory / "redis.sock")
        self.url = f"unix://{self.sock}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.dir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", "0", "--unixsocket", self.sock, "--unixsocketperm",
                 "700", "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.command(b"PING") == b"+PONG\r\n":
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError((self.dir / "redis.log").read_text())

    def command(self, *words: bytes) -> bytes:
        """One RESP command, the raw reply (enough for PING and FLUSHALL)."""
        import socket

        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.sock)
            s.sendall(b"*%d\r\n" % len(words)
                      + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words))
            return s.recv(65536)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
