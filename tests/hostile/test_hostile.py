"""Hostile peers against a real daemon (started and stopped by pid), on every front:
Sophie (Unix, TCP, TLS), clamd (Unix, TCP), milter (Unix). After each probe the
daemon is alive, a connection opened before the probe is still served, and
nothing unscanned got a clean answer. The memory probes check the daemon's RSS
against README's bound: RSS at start + 3 x server.memory_budget_mb + 64 MiB."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from tests.conftest import Daemon, launch

MiB = 1024 * 1024
BUDGET_MB = 32
MAX_STREAM = 4 * MiB
OVERHEAD = 64 * MiB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="scand-h-"))  # short: Unix socket paths
    cert, key = work / "c.pem", work / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    ports = {"tcp": free_port(), "tls": free_port(), "clamd": free_port()}
    config = f"""
[server]
max_stream_bytes = {MAX_STREAM}
memory_budget_mb = {BUDGET_MB}
request_timeout = 3.0
max_connections = 64
tcp = ["127.0.0.1:{ports['tcp']}"]
tls = ["127.0.0.1:{ports['tls']}"]
tls_cert = "{cert}"
tls_key = "{key}"
[pool]
queue_size = 256
queue_wait = 30.0
[clamd_front]
socket = "{work}/clamd.ctl"
tcp = ["127.0.0.1:{ports['clamd']}"]
tcp_allow = ["127.0.0.0/8"]
[milter]
socket = "{work}/milter"
"""
    daemon = launch(work, 0, config=config, workers=2)
    try:
        yield Hostile(daemon, work, ports)
    finally:
        daemon.stop()


class Hostile:
    def __init__(self, daemon: Daemon, work: Path, ports: dict[str, int]) -> None:
        self.d = daemon
        self.work = work
        self.ports = ports
        self.clamd = str(work / "clamd.ctl")
        self.milter = str(work / "milter")
        self.proc = psutil.Process(daemon.proc.pid)
        self.baseline = self.proc.memory_info().rss

    @property
    def bound(self) -> int:
        return self.baseline + 3 * BUDGET_MB * MiB + OVERHEAD

    def unix(self, path: str, timeout: float = 20.0) -> socket.socket:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(path)
        return s

    def tcp(self, port: int, timeout: float = 20.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def alive(self, before: socket.socket | None = None) -> None:
        """The daemon runs; every front answers; ``before`` (a clamd IDSESSION opened
        before the probe) is still served."""
        assert self.d.proc.poll() is None, self.d.log()[-3000:]
        assert self.d.ask(b"PING\n") == b"PONG\n"
        assert ask(self.unix(self.clamd), b"nPING\n") == b"PONG\n"
        with self.unix(self.milter) as m:
            m.sendall(pkt(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF)))
            assert m.recv(100)[4:5] == b"O"
        if before is not None:
            before.sendall(b"zPING\0")
            assert before.recv(100).endswith(b"PONG\0")


@contextlib.contextmanager
def session_before(h: Hostile) -> Iterator[socket.socket]:
    s = h.unix(h.clamd)
    s.sendall(b"zIDSESSION\0")
    try:
        yield s
    finally:
        s.close()


def ask(s: socket.socket, data: bytes, half_close: bool = True) -> bytes:
    """Send (a refusal may close the socket while we still send), read to EOF."""
    with s:
        with contextlib.suppress(OSError):
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        out = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                out += chunk
        return out


def pkt(cmd: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + cmd + data


class PeakRss:
    """Samples a process's RSS in a thread while the block runs."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc, self.peak, self._stop = proc, 0, threading.Event()

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.01)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- findings of issue 22 ------------------------------------------------------------

@pytest.mark.parametrize("request_", [b"nSCAN /etc/passwd\0x\n", b"nCONTSCAN /etc/\0\n",
                                      b"nMULTISCAN /tmp/\0a\n"])
def test_a_nul_in_a_clamd_path_costs_one_connection(hostile: Hostile, request_: bytes) -> None:
    with session_before(hostile) as before:
        reply = ask(hostile.unix(hostile.clamd), request_)
        assert b"OK" not in reply
        hostile.alive(before)


@pytest.mark.parametrize("path", ["/etc/passwd", "/etc/shadow", "/nonexistent/x", "/root"])
@pytest.mark.parametrize("command", ["SCAN", "CONTSCAN", "MULTISCAN", "ALLMATCHSCAN"])
def test_a_network_peer_reads_no_files_and_learns_nothing(hostile: Hostile, command: str,
                                                          path: str) -> None:
    reply = ask(hostile.tcp(hostile.ports["clamd"]), f"n{command} {path}\n".encode())
    assert reply == f"{command} command not allowed over TCP. ERROR\n".encode()


def test_reload_over_tcp_is_refused(hostile: Hostile) -> None:
    assert ask(hostile.tcp(hostile.ports["clamd"]), b"nRELOAD\n") == (
        b"RELOAD command not allowed over TCP. ERROR\n")
    assert ask(hostile.tcp(hostile.ports["tcp"]), b"RELOAD\n").startswith(b"-1:not-allowed")


def _hold_streams(h: Hostile, n: int, open_: Callable[[], socket.socket],
                  header: bytes) -> list[socket.socket]:
    held = []
    for _ in range(n):
        s = open_()
        s.sendall(header + b"x" * 65536)
        held.append(s)
    return held


def test_held_streams_are_bounded_by_the_budget(hostile: Hostile) -> None:
    """40 Sophie STREAMs of the maximum size held open (issue 22: 294 -> 1,296 MiB)."""
    with session_before(hostile) as before, PeakRss(hostile.proc) as rss:
        held = _hold_streams(hostile, 40, lambda: hostile.unix(hostile.d.socket),
                             f"STREAM {MAX_STREAM}\n".encode())
        busy = 0
        for s in held:
            s.settimeout(0.5)
            with contextlib.suppress(TimeoutError):
                busy += s.recv(100).startswith(b"-1:busy")
        assert busy >= 40 - BUDGET_MB * MiB // MAX_STREAM
        for s in held:
            s.close()
        hostile.alive(before)
    assert rss.peak < hostile.bound, (rss.peak // MiB, hostile.bound // MiB)


def test_unfinished_tls_handshakes_count_and_expire(hostile: Hostile) -> None:
    with session_before(hostile) as before, PeakRss(hostile.proc) as rss:
        silent = [hostile.tcp(hostile.ports["tls"]) for _ in range(200)]
        hostile.alive(before)  # the other fronts and the Unix socket are not starved
        time.sleep(4.0)  # past the handshake deadline (request_timeout = 3 s)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(hostile.tcp(hostile.ports["tls"])) as tls:
            tls.sendall(b"PING\n")
            assert tls.recv(100) == b"PONG\n"
        for s in silent:
            s.close()
    assert rss.peak < hostile.bound


# -- 100 concurrent maximum-size requests on each front ------------------------------

def _sophie_stream(h: Hostile) -> bytes:
    return ask(h.unix(h.d.socket, timeout=60),
               f"STREAM {MAX_STREAM}\n".encode() + b"a" * MAX_STREAM)


def _clamd_instream(h: Hostile) -> bytes:
    s = h.tcp(h.ports["clamd"], timeout=60)
    body = b"zINSTREAM\0" + struct.pack("!I", MAX_STREAM) + b"a" * MAX_STREAM
    return ask(s, body + struct.pack("!I", 0))


def _milter_message(h: Hostile) -> bytes:
    s = h.unix(h.milter, timeout=60)
    data = (pkt(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF)) + pkt(b"L", b"Subject\0x\0")
            + b"".join(pkt(b"B", b"a" * 65536) for _ in range(15)) + pkt(b"E"))
    with contextlib.suppress(OSError):
        s.sendall(data)
    out = b""
    with s, contextlib.suppress(OSError):
        while b"451" not in out and not out.endswith(pkt(b"c")):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("front", "probe", "ok", "busy"), [
    ("sophie", _sophie_stream, b"0\n", b"-1:busy"),
    ("clamd", _clamd_instream, b"stream: OK\0", b"stream: busy ERROR"),
    ("milter", _milter_message, pkt(b"c"), b"451 4.7.1"),
])
def test_100_concurrent_max_size_requests(hostile: Hostile, front: str,
                                          probe: Callable[[Hostile], bytes], ok: bytes,
                                          busy: bytes) -> None:
    with session_before(hostile) as before, PeakRss(hostile.proc) as rss:
        with ThreadPoolExecutor(100) as pool:
            replies = list(pool.map(lambda _i: probe(hostile), range(100)))
        hostile.alive(before)
    answered = [r for r in replies if r]
    scanned = sum(r.endswith(ok) for r in answered)
    refused = sum(busy in r for r in answered)
    print(f"{front}: {scanned} scanned, {refused} busy, {100 - len(answered)} cut; daemon RSS "
          f"peak {rss.peak // MiB} MiB, start {hostile.baseline // MiB} MiB, "
          f"bound {hostile.bound // MiB} MiB")
    assert scanned >= 1 and scanned + refused == len(answered), replies[:5]
    assert rss.peak < hostile.bound, (front, rss.peak // MiB, hostile.bound // MiB)


# -- slow, half-open, floods, malformed frames ---------------------------------------

def test_slow_peers_get_their_timeout(hostile: Hostile) -> None:
    with session_before(hostile) as before:
        slow = [hostile.unix(hostile.d.socket), hostile.unix(hostile.clamd)]
        for s, first in zip(slow, [b"/tm", b"nSCA"], strict=True):
            s.sendall(first)
        time.sleep(3.5)
        assert slow[0].recv(100).startswith(b"-1:timeout")
        assert slow[1].recv(100) == b"COMMAND READ TIMED OUT\n"
        hostile.alive(before)


def test_a_peer_gone_mid_stream_gives_its_budget_back(hostile: Hostile) -> None:
    for _ in range(3 * BUDGET_MB * MiB // MAX_STREAM):  # three budgets' worth, in turn
        s = hostile.unix(hostile.d.socket)
        s.sendall(f"STREAM {MAX_STREAM}\n".encode() + b"x" * 1000)
        s.close()
    time.sleep(0.5)
    assert _sophie_stream(hostile) == b"0\n"


def test_half_closed_peer_still_gets_its_reply(hostile: Hostile) -> None:
    assert ask(hostile.unix(hostile.d.socket), b"STREAM 3\nabc") == b"0\n"
    assert ask(hostile.unix(hostile.clamd), b"nINSTREAM\n" + struct.pack("!I", 3) + b"abc"
               + struct.pack("!I", 0)) == b"stream: OK\n"


def test_pipelining_floods(hostile: Hostile) -> None:
    with session_before(hostile) as before:
        sophie = hostile.unix(hostile.d.socket)
        sophie.sendall(b"PING\n" * 20000)  # never read: back-pressure, not memory
        clamd = hostile.unix(hostile.clamd)
        clamd.sendall(b"zIDSESSION\0" + b"zPING\0" * 20000)
        milter = hostile.unix(hostile.milter)
        with contextlib.suppress(OSError):
            milter.sendall(pkt(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF))
                           + b"".join(pkt(b"D", b"M" + f"m{i}".encode() + b"\0" + b"v" * 60000
                                          + b"\0") for i in range(2000)))
        hostile.alive(before)
        for s in (sophie, clamd, milter):
            s.close()


@pytest.mark.parametrize(("where", "frame", "unscanned"), [
    ("sophie", b"/" + b"a" * 70000 + b"\n", b"-1:"),
    ("sophie", b"STREAM 99999999999\n", b"-1:"),
    ("sophie", b"STREAM 5\nab", b""),
    ("clamd", b"zINSTREAM\0" + b"\xff\xff\xff\xff", b"ERROR"),
    ("clamd", b"n" + b"A" * 70000 + b"\n", b""),
    ("clamd", b"zIDSESSION\0zINSTREAM\0\x00\x00", b""),
    ("milter", b"\x7f\xff\xff\xffB", b""),
    ("milter", pkt(b"Z", b"junk"), b""),
])
def test_malformed_frames(hostile: Hostile, where: str, frame: bytes,
                          unscanned: bytes) -> None:
    path = {"sophie": hostile.d.socket, "clamd": hostile.clamd, "milter": hostile.milter}[where]
    with session_before(hostile) as before:
        reply = ask(hostile.unix(path), frame)
        assert unscanned in reply
        assert b"OK" not in reply and not reply.startswith(b"0")
        hostile.alive(before)
