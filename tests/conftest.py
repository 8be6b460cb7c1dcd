"""Shared fixtures: a real scand daemon on a real Unix socket, pid-tracked.

``scand_daemon`` starts ``python -m scand.cli serve`` and waits until it
answers PING; teardown sends SIGTERM, waits, and kills by pid whatever the
daemon left behind (never by name).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Built from halves: this file must not itself be an EICAR test file.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


class SophieClient:
    """A minimal test client: raw bytes out, reply lines back."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        """The next reply line, LF included; b"" if the daemon closed first."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\n")
        return head + b"\n"

    def ask(self, request: bytes) -> bytes:
        self.send(request)
        return self.line()

    def closed_by_peer(self, wait: float = 3.0) -> bool:
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except (TimeoutError, OSError):
            return False

    def close(self) -> None:
        self.sock.close()


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    socket: str
    workdir: Path
    log_path: Path
    children: set[int] = field(default_factory=set)

    def client(self, timeout: float = 10.0) -> SophieClient:
        return SophieClient(self.socket, timeout)

    def ask(self, request: bytes, timeout: float = 10.0) -> bytes:
        c = self.client(timeout)
        try:
            return c.ask(request)
        finally:
            c.close()

    def stats(self) -> dict[str, object]:
        import json

        reply = self.ask(b"STATS\n")
        data: dict[str, object] = json.loads(reply)
        return data

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def track_children(self) -> None:
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self.children.add(child.pid)
        except psutil.Error:
            pass

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        self.track_children()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in self.children:  # leftovers, by pid only
            try:
                p = psutil.Process(pid)
                p.kill()
                p.wait(5)
            except psutil.Error:
                pass
        return self.proc.returncode


class Load:
    """Client threads on persistent connections asking for ``targets`` round robin
    until the ``with`` block ends; every reply is kept as (time, target, reply)."""

    def __init__(self, daemon: Daemon, targets: list[str], clients: int = 4) -> None:
        self.daemon = daemon
        self.targets = targets
        self.replies: list[tuple[float, str, bytes]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, offset: int) -> None:
        c = self.daemon.client(timeout=30)
        n = offset
        while not self._stop.is_set():
            target = self.targets[n % len(self.targets)]
            n += 1
            reply = c.ask(f"{target}\n".encode())
            with self._lock:
                self.replies.append((time.monotonic(), target, reply))
        c.close()

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def wait_for_ping(path: str, proc: subprocess.Popen[bytes], log_path: Path, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"scand exited {proc.returncode}:\n{log_path.read_text()}")
        try:
            c = SophieClient(path, 2.0)
            try:
                if c.ask(b"PING\n") == b"PONG\n":
                    return
            finally:
                c.close()
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"scand did not answer PING in {limit}s:\n{log_path.read_text()}")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temporary directory: Unix socket paths must stay under 108 bytes."""
    d = Path(tempfile.mkdtemp(prefix="scand-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


DaemonFactory = Callable[..., Daemon]


def launch(workdir: Path, n: int, *args: str, config: str | None = None, workers: int = 2,
           ready_timeout: float = 30.0, preexec: Callable[[], None] | None = None) -> Daemon:
    """Start ``scand serve`` on ``workdir/s<n>`` and wait for PING. The caller stops it.

    The engine is ``builtin`` unless ``args`` or ``config`` name one: the default
    (``auto``) would pick libclamav on a host whose /var/lib/clamav holds a database,
    or for a ``--signatures`` directory of .hdb/.ndb files."""
    sock = str(workdir / f"s{n}")
    explicit = any(a == "--engine" or a.startswith("--engine=") for a in args) or (
        config is not None and re.search(r"(?m)^\s*name\s*=", config) is not None)
    cmd = [sys.executable, "-m", "scand.cli", "serve", "--socket", sock,
           "--workers", str(workers), *([] if explicit else ["--engine", "builtin"]), *args]
    if config is not None:
        cfg = workdir / f"scand{n}.toml"
        cfg.write_text(config)
        cmd += ["--config", str(cfg)]
    log_path = workdir / f"scand{n}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                env=env, cwd=workdir, preexec_fn=preexec)
    daemon = Daemon(proc, sock, workdir, log_path)
    try:
        wait_for_ping(sock, proc, log_path, ready_timeout)
    except BaseException:
        daemon.stop()
        raise
    daemon.track_children()
    return daemon


@pytest.fixture
def scand_daemon(short_tmp: Path) -> Iterator[DaemonFactory]:
    """Factory: ``scand_daemon("--engine", "chaos", config="...toml text...")``."""
    started: list[Daemon] = []

    def start(*args: str, **kwargs: Any) -> Daemon:
        daemon = launch(short_tmp, len(started), *args, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def daemon(scand_daemon: DaemonFactory) -> Daemon:
    """A default daemon on the built-in engine with two workers."""
    return scand_daemon()
