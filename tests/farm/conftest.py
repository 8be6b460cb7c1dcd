"""Fixtures for the farm features: a real redis-server on a Unix socket, pid-tracked."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


class Redis:
    """One redis-server on ``<dir>/redis.sock`` (no TCP, no persistence)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.sock = str(directory / "redis.sock")
        self.url = f"unix://{self.sock}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.sock, "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.command(b"PING") == b"+PONG\r\n":
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError((self.dir / "redis.log").read_text())

    def command(self, *words: bytes) -> bytes:
        """One RESP command, the raw reply (enough for PING, DBSIZE, FLUSHALL)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(self.sock)
            s.sendall(b"*%d\r\n" % len(words)
                      + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words))
            return s.recv(65536)

    def dbsize(self) -> int:
        return int(self.command(b"DBSIZE")[1:].strip())

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        self.proc.wait(10)


def write_secret(directory: Path, text: str = "farm-secret-0123456789abcdef",
                 name: str = "cache.secret") -> Path:
    """A ``cache.secret_file`` (mode 0600) in ``directory``."""
    path = directory / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def redis_server(short_tmp: Path) -> Iterator[Redis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server (Debian package) is not installed")
    r = Redis(short_tmp)
    r.start()
    yield r
    r.stop(kill=True)
