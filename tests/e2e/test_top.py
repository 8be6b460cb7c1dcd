"""``scand top`` in a pseudo-terminal against a live daemon; ``scand stats`` once.

The screen is what the last frame drew (after the last cursor-home); the
terminal's mode is read from the pty before and after.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

from scand.top import ENTER, LEAVE
from tests.conftest import EICAR, ROOT, DaemonFactory, launch
from tests.farm.test_remote import make_cert, tcp_ports

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm"}


class Terminal:
    """``scand top`` on a fresh 80x24 pty."""

    def __init__(self, *args: str) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: size the terminal, then become scand top
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
                os.execve(sys.executable, [sys.executable, "-m", "scand.cli", "top", *args],
                          ENV)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output = ""
        self.status: int | None = None

    def read(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            self.output += chunk.decode("utf-8", "replace")

    def screen(self) -> list[str]:
        frame = self.output.rpartition("\x1b[H")[2]
        frame = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", frame)
        return frame.replace("\r", "").split("\n")

    def wait_screen(self, ok: Callable[[list[str]], bool], limit: float = 30) -> list[str]:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            self.read(0.2)
            if self.output and ok(self.screen()):
                return self.screen()
        raise AssertionError("screen never matched; last frame:\n" + "\n".join(self.screen()))

    def mode(self) -> list[object]:
        return termios.tcgetattr(self.fd)

    def wait_exit(self, limit: float = 10) -> int:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            self.read(0.1)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.read(0.2)
                self.status = status
                return os.waitstatus_to_exitcode(status)
        raise AssertionError("scand top did not exit")

    def close(self) -> None:
        if self.status is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def canonical(mode: list[object]) -> bool:
    lflag = mode[3]
    assert isinstance(lflag, int)
    return bool(lflag & termios.ICANON) and bool(lflag & termios.ECHO)


def test_top_shows_the_daemon_and_quits_on_q(scand_daemon: DaemonFactory,
                                            short_tmp: Path) -> None:
    d = scand_daemon()
    target = short_tmp / "eicar.com"
    target.write_bytes(EICAR)
    for _ in range(3):
        assert d.ask(f"{target}\n".encode()) == b"1:Eicar-Test-Signature\n"
    pids = [str(w["pid"]) for w in d.stats()["pool"]["workers"]]  # type: ignore[index]
    term = Terminal("--socket", d.socket)
    try:
        before = term.mode()
        assert canonical(before)  # the pty starts in canonical mode, echo on
        # The second frame: a rate measured between two replies (the first: the average).
        screen = term.wait_screen(
            lambda s: re.search(r"^requests 3  \d+\.\d/s  ", "\n".join(s), re.M) is not None)
        text = "\n".join(screen)
        assert screen[0].startswith("scand 0.1.0  up ")
        assert "engine builtin sigs=1  generation 0" in screen[0]
        assert re.search(r"requests 3  \d+\.\d/s  commands \d+", text), text
        assert "verdicts  clean 0" not in text and "infected 3" in text
        assert "latency ms  p50 " in text
        assert "queue 0  workers 2/2 (busy 0, idle 2)" in text
        assert "recycles  rss 0  jobs 0  memory 0  timeout 0  crash 0  cancel 0  reload 0" in text
        assert "cache  hits " in text and "memory  private " in text
        assert any(line.lstrip().startswith("PID STATE") for line in screen)
        for pid in pids:
            assert any(line.split()[:2] == [pid, "idle"] for line in screen if line.strip()), text
        assert screen[-1].startswith(f"q quit   refresh 1s   {d.socket}")
        assert len(screen) == 24 and all(len(line) <= 80 for line in screen)
        assert ENTER in term.output and not canonical(term.mode())  # cbreak while it runs
        os.write(term.fd, b"q")
        assert term.wait_exit() == 0
        assert term.output.rstrip().endswith(LEAVE)  # the alternate screen left last
        assert term.mode() == before  # the terminal as it was
    finally:
        term.close()


def test_top_says_when_the_daemon_is_unreachable_and_retries(short_tmp: Path) -> None:
    sock = short_tmp / "s7"
    term = Terminal("--socket", str(sock))
    daemon = None
    try:
        screen = term.wait_screen(lambda s: "cannot reach" in s[0])
        assert screen[0] == f"scand top: cannot reach the daemon at {sock}"
        assert screen[1] == "  No such file or directory"
        daemon = launch(short_tmp, 7)  # the daemon comes up on that socket
        screen = term.wait_screen(lambda s: s[0].startswith("scand 0.1.0"))
        assert "engine builtin sigs=1" in screen[0]
        os.write(term.fd, b"\x03")  # Ctrl-C: SIGINT from the terminal
        assert term.wait_exit() == 0
        assert term.output.rstrip().endswith(LEAVE)
        assert canonical(term.mode())
    finally:
        term.close()
        if daemon is not None:
            daemon.stop()


def test_top_needs_a_terminal(short_tmp: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "scand.cli", "top", "--socket",
                           str(short_tmp / "s")], capture_output=True, text=True, env=ENV,
                          stdin=subprocess.DEVNULL, timeout=30, check=False)
    assert done.returncode == 2 and "scand stats" in done.stderr


def stats_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scand.cli", "stats", *args],
                          capture_output=True, text=True, env=ENV, timeout=30, check=False)


def test_stats_once_as_a_table_json_and_over_tls(scand_daemon: DaemonFactory,
                                                 short_tmp: Path) -> None:
    cert, key = make_cert(short_tmp)
    d = scand_daemon(config=f'[server]\ntls = ["127.0.0.1:0"]\ntls_cert = "{cert}"\n'
                            f'tls_key = "{key}"\n')
    done = stats_cli("--socket", d.socket)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("scand 0.1.0  up ") and "engine builtin sigs=1" in lines[0]
    assert re.search(r"^requests \d+  \d+\.\d/s avg  ", done.stdout, re.M), done.stdout
    assert sum(1 for line in lines if line.split()[1:2] == ["idle"]) == 2
    done = stats_cli("--socket", d.socket, "--json")
    data = json.loads(done.stdout)
    assert data["engine"]["name"] == "builtin" and len(data["pool"]["workers"]) == 2
    [(port, _)] = tcp_ports(d)
    done = stats_cli("--socket", f"127.0.0.1:{port}", "--tls", "--ca", str(cert), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pool"]["size"] == 2
    done = stats_cli("--socket", f"127.0.0.1:{port}", "--tls")  # not the system's CA
    assert done.returncode == 69 and "CERTIFICATE_VERIFY_FAILED" in done.stderr, done.stderr
    conf = short_tmp / "other.toml"
    conf.write_text(f'[server]\nsocket = "{d.socket}"\n')
    done = stats_cli("--config", str(conf), "--json")  # the socket a config file names
    assert done.returncode == 0 and json.loads(done.stdout)["version"] == "0.1.0", done.stderr
    done = stats_cli("--socket", str(short_tmp / "nothing-here"))
    assert done.returncode == 69
    assert done.stderr == (f"scand stats: cannot reach the daemon at {short_tmp}/nothing-here: "
                           "No such file or directory\n")
