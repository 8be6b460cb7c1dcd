"""Fixtures for the farm features: a real redis-server on a Unix socket, pid-tracked."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.procs import RedisServer


class Redis(RedisServer):
    """bench.procs.RedisServer, plus what the tests ask of it."""

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
