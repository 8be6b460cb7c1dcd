"""Helpers for the client tests: run a client script as a subprocess, fake Sophie servers.

The scripts are the single files that clients/build.py makes from clients/, run
with ``python -I -S``: no site-packages and no repository on sys.path, exactly
as when copied alone to a relay host.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clients import build
from tests.conftest import EICAR

CLIENTS = Path(__file__).resolve().parents[2] / "clients"
# The single files, built from clients/ as an admin gets them (clients/build.py).
BUILT = CLIENTS.parent / "build" / "test-clients"
build.build(BUILT)
SCRIPTS = {name: BUILT / name for name in ("scand-scan", "scand-qfilter", "scand-queue",
                                           "scand-pipe")}
# A message body the chaos engine answers with `-1:internal` (an unknown fault word).
CHAOS_UNCHECKED = b"SCAND-CHAOS no-such-fault\n"

__all__ = ["BUILT", "CHAOS_UNCHECKED", "CLIENTS", "EICAR", "SCRIPTS", "FakeSophie", "run_client"]


def client_env(**extra: str) -> dict[str, str]:
    """A clean environment: no SCAND_* leaking in from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCAND_")}
    env["SCAND_SYSLOG"] = "0"
    env.update(extra)
    return env


def run_client(
    name: str,
    *args: str,
    stdin: bytes | int | None = b"",
    stdout: int | None = subprocess.PIPE,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[bytes]:
    """Run one client script as its own process (``stdin`` may be bytes or a descriptor)."""
    cmd = [sys.executable, "-I", "-S", str(SCRIPTS[name]), *args]
    env = env if env is not None else client_env()
    if isinstance(stdin, bytes):
        return subprocess.run(cmd, input=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env,
                              cwd=cwd, timeout=timeout, check=False)
    return subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env,
                          cwd=cwd, timeout=timeout, check=False)


Handler = Callable[[socket.socket, int], None]


class FakeSophie:
    """A scripted Sophie server on a Unix socket, one thread per connection.

    ``handler(conn, n)`` gets each accepted connection and its number (0, 1, ...);
    ``connections`` counts them. Everything is closed and joined at teardown.
    """

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.connections = 0
        self.errors: list[BaseException] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            n = self.connections
            self.connections += 1
            self._conns.append(conn)
            t = threading.Thread(target=self._run, args=(conn, n), daemon=True)
            self._threads.append(t)
            t.start()

    def _run(self, conn: socket.socket, n: int) -> None:
        try:
            conn.settimeout(10)
            self.handler(conn, n)
        except OSError:
            pass  # the client went away: part of several tests
        except BaseException as exc:  # surfaced by close()
            self.errors.append(exc)

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(5)
        self._listener.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):  # wakes a handler blocked in recv()
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        for t in self._threads:
            t.join(5)
        if self.errors:
            raise self.errors[0]


def read_line(conn: socket.socket) -> bytes:
    """One request line from a client, LF excluded; b"" on EOF."""
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            return b""
        buf += chunk
    return buf[:-1]


@pytest.fixture
def fake_sophie(short_tmp: Path) -> Iterator[Callable[[Handler], FakeSophie]]:
    """Factory: ``fake_sophie(handler)`` starts a FakeSophie at a fresh short path."""
    servers: list[FakeSophie] = []

    def start(handler: Handler) -> FakeSophie:
        server = FakeSophie(str(short_tmp / f"fake{len(servers)}"), handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
