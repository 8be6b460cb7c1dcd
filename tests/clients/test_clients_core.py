"""The Python client (clients/scandclient.py) against scripted fake servers.

Exact-byte edge cases the real daemon never produces on purpose: split
replies, a daemon that closes early or never answers, an early too-large reply
while the client is still sending, stale cached connections.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from clients import cliutil, core
from clients import scandclient as sc
from tests.clients.conftest import FakeSophie, Handler, read_line

Start = Callable[[Handler], FakeSophie]

# --- pure pieces ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "verdict"),
    [
        (b"0", sc.Clean()),
        (b"1:Eicar-Test-Signature", sc.Infected("Eicar-Test-Signature")),
        (b"-1:too-large 52428800>26214400", sc.Unchecked("too-large", "52428800>26214400")),
        (b"-1:not-found /var/spool/x y", sc.Unchecked("not-found", "/var/spool/x y")),
        (b"-1:busy", sc.Unchecked("busy")),
        (b"-1:", sc.Unchecked("unspecified")),
        (b"-1", sc.Unchecked("unspecified")),
    ],
)
def test_parse_verdict(line: bytes, verdict: sc.Verdict) -> None:
    assert sc.parse_verdict(line) == verdict


@pytest.mark.parametrize("line", [b"", b"1", b"1:", b"OK", b"0 ", b"PONG", b"2:x", b"-2:x"])
def test_parse_verdict_refuses_garbage(line: bytes) -> None:
    # `1` and `1:` especially: Exim reads them as clean; a client must not guess.
    with pytest.raises(sc.ScandProtocolError):
        sc.parse_verdict(line)


def test_verdicts_are_values() -> None:
    assert sc.Clean() == sc.Clean()
    assert sc.Infected("A") != sc.Infected("B")
    assert sc.Unchecked("busy") != sc.Unchecked("busy", "x")
    assert len({sc.Clean(), sc.Clean(), sc.Infected("A"), sc.Infected("A")}) == 2
    assert repr(sc.Unchecked("busy", "d")) == "Unchecked('busy', 'd')"


def test_parse_options() -> None:
    opts, operands = cliutil.parse_options(
        ["--json", "a", "--socket=/s", "-", "-f", "", "--timeout", "3", "--", "-x", "--json"],
        ("--json",), ("--socket", "--timeout", "-f"),
    )
    assert opts == {"--json": True, "--socket": "/s", "-f": "", "--timeout": "3"}
    assert operands == ["a", "-", "-x", "--json"]
    with pytest.raises(cliutil.UsageError, match="unknown option"):
        cliutil.parse_options(["--nope"], (), ())
    with pytest.raises(cliutil.UsageError, match="needs a value"):
        cliutil.parse_options(["--socket"], (), ("--socket",))
    with pytest.raises(cliutil.UsageError, match="must be > 0"):
        cliutil.option_float({"--timeout": "0"}, "--timeout", 1.0)


def test_default_socket_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCAND_SOCKET", "/run/x/sophie")
    assert sc.default_socket_path() == "/run/x/sophie"
    monkeypatch.delenv("SCAND_SOCKET")
    system = tmp_path / "sophie"
    monkeypatch.setattr(core, "SYSTEM_SOCKET", str(system))  # where the function lives
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert sc.default_socket_path() == "/run/user/1000/scand/sophie"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert sc.default_socket_path() == f"/tmp/scand-{__import__('os').getuid()}/sophie"
    system.symlink_to(tmp_path / "scand" / "sophie")  # dangling while the daemon is down
    assert sc.default_socket_path() == str(system)


def test_scan_path_needs_an_absolute_path() -> None:
    client = sc.Client("/nonexistent/sock")
    with pytest.raises(ValueError, match="absolute"):
        client.scan_path("relative/file")
    with pytest.raises(ValueError, match="LF"):
        client.scan_path("/a\nb")


# --- against fake servers --------------------------------------------------------


def answer_each(reply: Callable[[bytes], bytes]) -> Handler:
    """A well-behaved server: every request line gets ``reply(line)``."""

    def handler(conn: socket.socket, n: int) -> None:
        while line := read_line(conn):
            if line.startswith(b"STREAM "):
                conn.recv(int(line[7:]), socket.MSG_WAITALL)
            conn.sendall(reply(line))

    return handler


def test_split_reply_byte_by_byte(fake_sophie: Start) -> None:
    def handler(conn: socket.socket, n: int) -> None:
        assert read_line(conn) == b"/var/spool/scan/x"
        for byte in b"1:Worm.Klez.H\n":
            conn.sendall(bytes([byte]))
            time.sleep(0.01)

    server = fake_sophie(handler)
    with sc.Client(server.path, timeout=5) as client:
        assert client.scan_path("/var/spool/scan/x") == sc.Infected("Worm.Klez.H")


def test_daemon_closes_without_reply(fake_sophie: Start) -> None:
    def handler(conn: socket.socket, n: int) -> None:
        read_line(conn)
        conn.close()

    server = fake_sophie(handler)
    with sc.Client(server.path, timeout=5) as client, pytest.raises(
        sc.ScandProtocolError, match="without a reply"
    ):
        client.scan_path("/x")
    assert server.connections == 1  # something was sent: no silent retry


def test_one_true_deadline(fake_sophie: Start) -> None:
    """A daemon trickling bytes without ever ending the line cannot stretch the timeout."""

    def handler(conn: socket.socket, n: int) -> None:
        read_line(conn)
        for _ in range(40):
            conn.sendall(b"1")
            time.sleep(0.1)

    server = fake_sophie(handler)
    client = sc.Client(server.path, timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(sc.ScandTimeout, match="within 1s"):
        client.scan_path("/x")
    elapsed = time.monotonic() - t0
    # A per-recv timeout would last the whole 4 s trickle and 1 s more.
    assert 0.95 <= elapsed < 2.5, elapsed


def test_no_reply_times_out(fake_sophie: Start) -> None:
    finished = threading.Event()

    def handler(conn: socket.socket, n: int) -> None:
        read_line(conn)
        finished.wait(2)

    server = fake_sophie(handler)
    t0 = time.monotonic()
    with pytest.raises(sc.ScandTimeout):
        sc.Client(server.path, timeout=0.3).scan_bytes(b"data")
    assert time.monotonic() - t0 < 1.8  # not the 2 s the server waits
    finished.set()


def oversize_then_close(conn: socket.socket, n: int) -> None:
    """scand's answer to a STREAM over its limit: reply at once, close, read nothing."""
    header = read_line(conn)
    assert header.startswith(b"STREAM ")
    conn.sendall(b"-1:too-large " + header[7:] + b">1000\n")
    conn.close()


def test_oversize_stream_reports_too_large_not_broken_pipe(fake_sophie: Start) -> None:
    server = fake_sophie(oversize_then_close)
    data = b"x" * (8 * 1024 * 1024)  # far more than the socket buffers hold
    with sc.Client(server.path, timeout=10) as client:
        assert client.scan_bytes(data) == sc.Unchecked("too-large", f"{len(data)}>1000")
        # The daemon closed that connection; the next call must use a new one.
        assert client.scan_bytes(b"small") == sc.Unchecked("too-large", "5>1000")
    assert server.connections == 2


def test_early_reply_without_close_is_read_while_sending(fake_sophie: Start) -> None:
    """A reply that arrives while the client is blocked sending is taken at once."""

    finished = threading.Event()

    def handler(conn: socket.socket, n: int) -> None:
        read_line(conn)
        conn.sendall(b"-1:busy\n")
        finished.wait(3)  # neither reads nor closes

    server = fake_sophie(handler)
    client = sc.Client(server.path, timeout=5)
    t0 = time.monotonic()
    assert client.scan_bytes(b"y" * (8 * 1024 * 1024)) == sc.Unchecked("busy")
    assert time.monotonic() - t0 < 2.5  # not the 3 s the server waits
    assert client._sock is None  # out of step: never reused
    finished.set()


def test_connection_is_reused(fake_sophie: Start) -> None:
    server = fake_sophie(answer_each(lambda line: b"0\n"))
    with sc.Client(server.path, timeout=5) as client:
        for _ in range(5):
            assert client.scan_path("/x") == sc.Clean()
        assert client.scan_bytes(b"abc") == sc.Clean()
    assert server.connections == 1


def test_reconnects_once_when_the_cached_connection_died(fake_sophie: Start) -> None:
    """The daemon closed an idle connection: the next call reconnects transparently."""
    closed = threading.Event()

    def handler(conn: socket.socket, n: int) -> None:
        read_line(conn)
        conn.sendall(b"0\n")
        conn.close()  # as an idle timeout would
        closed.set()

    server = fake_sophie(handler)
    with sc.Client(server.path, timeout=5) as client:
        assert client.scan_path("/x") == sc.Clean()
        assert closed.wait(5)  # idle-closed before the next request, as in real life
        assert client.scan_path("/y") == sc.Clean()
    assert server.connections == 2


def test_reconnects_when_send_fails_before_anything_left(fake_sophie: Start) -> None:
    """The liveness check passed, then the first send hit a closed socket: retry once."""
    server = fake_sophie(answer_each(lambda line: b"0\n"))
    client = sc.Client(server.path, timeout=5)
    assert client.scan_path("/x") == sc.Clean()
    assert client._sock is not None
    client._sock.shutdown(socket.SHUT_WR)  # our side can no longer send: EPIPE on send()
    assert client.scan_path("/y") == sc.Clean()
    assert server.connections == 2
    client.close()


def test_extra_reply_line_drops_the_connection(fake_sophie: Start) -> None:
    server = fake_sophie(answer_each(lambda line: b"0\n0\n"))
    with sc.Client(server.path, timeout=5) as client:
        assert client.scan_path("/x") == sc.Clean()
        assert client.scan_path("/y") == sc.Clean()
    assert server.connections == 2


def test_overlong_reply_is_a_protocol_error(fake_sophie: Start) -> None:
    server = fake_sophie(answer_each(lambda line: b"1:" + b"A" * 70000 + b"\n"))
    with pytest.raises(sc.ScandProtocolError, match="longer"):
        sc.Client(server.path, timeout=5).scan_path("/x")


def test_unavailable(short_tmp: Path) -> None:
    with pytest.raises(sc.ScandUnavailable, match="No such file"):
        sc.Client(str(short_tmp / "missing"), timeout=2).scan_path("/x")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(short_tmp / "stale"))
    stale.close()  # a socket file nobody listens on
    with pytest.raises(sc.ScandUnavailable, match="refused"):
        sc.Client(str(short_tmp / "stale"), timeout=2).scan_path("/x")
    assert sc.Client(str(short_tmp / "missing"), timeout=2).ping() is False


def test_commands(fake_sophie: Start) -> None:
    replies = {b"PING": b"PONG\n", b"VERSION": b"scand 0.1.0 builtin sigs=1\n",
               b"STATS": b'{"requests": 3}\n'}
    server = fake_sophie(answer_each(lambda line: replies.get(line, b"-1:protocol\n")))
    with sc.Client(server.path, timeout=5) as client:
        assert client.ping() is True
        assert client.version() == "scand 0.1.0 builtin sigs=1"
        assert client.stats() == {"requests": 3}
    with pytest.raises(ValueError):
        client.command("/etc/passwd")


# --- the async variant -------------------------------------------------------------


async def test_async_split_reply_and_reuse(fake_sophie: Start) -> None:
    def handler(conn: socket.socket, n: int) -> None:
        while line := read_line(conn):
            if line == b"PING":
                conn.sendall(b"PONG\n")
                continue
            if line.startswith(b"STREAM "):
                assert conn.recv(int(line[7:]), socket.MSG_WAITALL) == b"abc"
            conn.sendall(b"1:")
            time.sleep(0.05)
            conn.sendall(b"Eicar-Test-Signature\n")

    server = fake_sophie(handler)
    async with sc.AsyncClient(server.path, timeout=5) as client:
        assert await client.scan_path("/x") == sc.Infected("Eicar-Test-Signature")
        assert await client.scan_bytes(b"abc") == sc.Infected("Eicar-Test-Signature")
        assert await client.ping() is True
    assert server.connections == 1


async def test_async_oversize_stream(fake_sophie: Start) -> None:
    server = fake_sophie(oversize_then_close)
    client = sc.AsyncClient(server.path, timeout=10)
    data = b"x" * (8 * 1024 * 1024)
    assert await client.scan_bytes(data) == sc.Unchecked("too-large", f"{len(data)}>1000")
    assert await client.scan_bytes(b"abc") == sc.Unchecked("too-large", "3>1000")
    assert server.connections == 2
    client.close()


async def test_async_deadline_and_reconnect(fake_sophie: Start) -> None:
    import trio

    closed = threading.Event()

    def handler(conn: socket.socket, n: int) -> None:
        read_line(conn)
        if n == 0:
            for _ in range(30):  # trickle, never finish the line
                conn.sendall(b"0")
                time.sleep(0.1)
        else:
            conn.sendall(b"0\n")
            conn.close()
            closed.set()

    server = fake_sophie(handler)
    client = sc.AsyncClient(server.path, timeout=0.8)
    t0 = time.monotonic()
    with pytest.raises(sc.ScandTimeout):
        await client.scan_path("/x")
    assert 0.75 <= time.monotonic() - t0 < 2.5
    assert await client.scan_path("/y") == sc.Clean()  # a fresh connection after the timeout
    with trio.fail_after(5):
        while not closed.is_set():
            await trio.sleep(0.01)
    assert await client.scan_path("/z") == sc.Clean()  # the cached one had been closed
    assert server.connections == 3


async def test_async_unavailable_and_early_close(fake_sophie: Start, short_tmp: Path) -> None:
    with pytest.raises(sc.ScandUnavailable):
        await sc.AsyncClient(str(short_tmp / "missing")).scan_path("/x")

    def handler(conn: socket.socket, n: int) -> None:
        read_line(conn)
        conn.close()

    server = fake_sophie(handler)
    with pytest.raises(sc.ScandProtocolError, match="without a reply"):
        await sc.AsyncClient(server.path, timeout=5).scan_path("/x")


async def test_async_requests_queue_on_the_lock_within_one_deadline(fake_sophie: Start) -> None:
    """Two tasks share a client: requests go in order, and lock waiting counts in the deadline."""
    import trio

    def handler(conn: socket.socket, n: int) -> None:
        while line := read_line(conn):
            time.sleep(0.6)
            conn.sendall(b"1:" + line.strip(b"/") + b"\n")

    server = fake_sophie(handler)
    client = sc.AsyncClient(server.path, timeout=1.0)
    results: dict[str, object] = {}

    async def ask(path: str) -> None:
        try:
            results[path] = await client.scan_path(path)
        except sc.ScandError as exc:
            results[path] = exc

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, "/first")
        await trio.sleep(0.05)
        nursery.start_soon(ask, "/second")  # waits ~0.55 s for the lock, then needs 0.6 s
    assert results["/first"] == sc.Infected("first")
    assert isinstance(results["/second"], sc.ScandTimeout)
    client.timeout = 5
    assert await client.scan_path("/third") == sc.Infected("third")


def test_reply_reader_is_sans_io() -> None:
    """The one reply parser both clients use: bytes in, a line (or an error) out."""
    r = core.ReplyReader()
    assert r.feed(b"1:Eicar-") is None
    assert r.feed(b"Test\n") == b"1:Eicar-Test"
    assert r.extra == 0
    r = core.ReplyReader()
    assert r.feed(b"0\nPONG\n") == b"0"
    assert r.extra == 5  # bytes after the line: the connection is out of step
    r = core.ReplyReader()
    assert r.feed(b"x" * core.MAX_REPLY_LINE) is None
    with pytest.raises(sc.ScandProtocolError, match="longer than"):
        r.feed(b"x")
    assert isinstance(core.ReplyReader().closed(0, None), core.NothingSent)
    r = core.ReplyReader()
    r.feed(b"-1:too")
    err = r.closed(10, BrokenPipeError(32, "Broken pipe"))
    assert isinstance(err, sc.ScandProtocolError) and "sending failed: Broken pipe" in str(err)
