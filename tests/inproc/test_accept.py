"""The listener toolkit on real sockets, in one process: the accept loop, its counters,
the allow-list, max_connections (TLS handshakes included), capacity errors, faults
and drain; the bind helpers; the root helper that removes socket files."""

from __future__ import annotations

import errno
import os
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
import trio.testing

from scand.fronts import listen
from scand.fronts.accept import FrontServer
from scand.fronts.budget import TLS_HANDSHAKE_BYTES, Held, MemoryBudget
from scand.fronts.listen import Bound, SocketPathError
from scand.fronts.proxy_gate import ProxyGate
from scand.fronts.transport import Transport
from scand.fronts.unlinker import SocketRemover


@dataclass(eq=False)
class EchoSession:
    transport: Transport
    boom: bool = False
    draining: bool = False

    async def run(self) -> None:
        while True:
            data = await self.transport.receive_some(1024)
            if not data or self.draining:
                return
            if data.startswith(b"boom"):
                raise ValueError("injected")
            await self.transport.send_all(b"echo " + data)

    def fault_reply(self) -> bytes:
        return b"-1:internal\n"

    def drain(self) -> None:
        self.draining = True


@dataclass
class EchoFront:
    name: str = "echo"
    ready_event: str = "echo_ready"
    sessions: list[EchoSession] = field(default_factory=list)
    closed: bool = False

    def open_session(self, transport: Transport, bound: Bound, held: Held) -> EchoSession:
        session = EchoSession(transport)
        self.sessions.append(session)
        return session

    def busy_reply(self, bound: Bound, detail: str) -> bytes:
        return b"-1:busy\n"

    def closing_reply(self, bound: Bound) -> bytes:
        return b"-1:shutting-down\n"

    def close(self) -> None:
        self.closed = True


async def connect(path: str) -> trio.SocketStream:
    return await trio.open_unix_socket(path)


async def first_bytes(stream: trio.SocketStream) -> bytes:
    """What the server sends first; b"" if it closed (or reset) the connection."""
    with trio.fail_after(5):
        try:
            return bytes(await stream.receive_some(10))
        except trio.BrokenResourceError:
            return b""


def recv_or_reset(sock: socket.socket) -> bytes:
    """What a plain socket gets from the server; b"" if it was closed or reset."""
    sock.settimeout(5)
    try:
        return sock.recv(100)
    except ConnectionResetError:
        return b""


async def ask(stream: trio.SocketStream, data: bytes) -> bytes:
    await stream.send_all(data)
    with trio.fail_after(5):
        return bytes(await stream.receive_some(1024))


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    return str(tmp_path / "s")


async def test_a_fault_costs_one_connection_and_the_listener_goes_on(
        sock_path: str, nursery: trio.Nursery) -> None:
    front = EchoFront()
    server = FrontServer(front, [listen.bind_unix(sock_path, 0o600)], max_connections=4)
    await nursery.start(server.run)
    a, b = await connect(sock_path), await connect(sock_path)
    assert await ask(a, b"hi") == b"echo hi"
    assert await ask(b, b"boom") == b"-1:internal\n"
    assert await b.receive_some(10) == b""  # closed
    assert await ask(a, b"again") == b"echo again"
    c = await connect(sock_path)
    assert await ask(c, b"new") == b"echo new"
    assert server.counters.faults == 1 and server.counters.accepted == 3
    await server.drain(1.0)
    await trio.testing.wait_all_tasks_blocked()
    assert front.closed and not os.path.exists(sock_path)


async def test_busy_over_max_connections_then_room_again(sock_path: str,
                                                         nursery: trio.Nursery) -> None:
    server = FrontServer(EchoFront(), [listen.bind_unix(sock_path, 0o600)], max_connections=1)
    await nursery.start(server.run)
    first = await connect(sock_path)
    assert await ask(first, b"1") == b"echo 1"
    second = await connect(sock_path)
    with trio.fail_after(5):
        assert await second.receive_some(100) == b"-1:busy\n"
    assert server.counters.refused_busy == 1
    await first.aclose()
    with trio.fail_after(5):
        while server.active:
            await trio.sleep(0.01)
    third = await connect(sock_path)
    assert await ask(third, b"3") == b"echo 3"
    await server.drain(1.0)


async def test_max_connections_counts_per_listener(tmp_path: Path,
                                                   nursery: trio.Nursery) -> None:
    """Peers filling one listener (silent TLS or TCP peers) leave another listener of
    the same front (the MTA's Unix socket) its own room."""
    flood, mta = str(tmp_path / "flood"), str(tmp_path / "mta")
    server = FrontServer(EchoFront(), [listen.bind_unix(flood, 0o600),
                                       listen.bind_unix(mta, 0o600)], max_connections=2)
    await nursery.start(server.run)
    held = [await connect(flood) for _ in range(2)]
    for stream in held:
        assert await ask(stream, b"x") == b"echo x"
    over = await connect(flood)
    with trio.fail_after(5):
        assert await over.receive_some(100) == b"-1:busy\n"
    own = await connect(mta)
    assert await ask(own, b"m") == b"echo m"
    await server.drain(1.0)


async def test_allow_list_is_checked_before_a_byte(nursery: trio.Nursery) -> None:
    nowhere = listen.parse_allow(["192.0.2.0/24"])
    server = FrontServer(EchoFront(), [listen.bind_tcp("127.0.0.1:0", nowhere)],
                         max_connections=4)
    await nursery.start(server.run)
    stream = await trio.open_tcp_stream("127.0.0.1", server.ports[0])
    got = await first_bytes(stream)
    assert got == b"" and server.counters.denied == 1 and server.counters.accepted == 0
    await server.drain(1.0)


async def test_drain_waits_on_an_event_and_answers_the_backlog(
        sock_path: str, nursery: trio.Nursery) -> None:
    server = FrontServer(EchoFront(), [listen.bind_unix(sock_path, 0o600)], max_connections=4)
    await nursery.start(server.run)
    live = await connect(sock_path)
    assert await ask(live, b"x") == b"echo x"
    server._accepting.cancel()  # stop taking from the backlog, as during a stop
    await trio.testing.wait_all_tasks_blocked()
    queued = socket.socket(socket.AF_UNIX)
    queued.connect(sock_path)
    with trio.fail_after(5):
        await server.drain(3.0)  # the live session ends at its next byte or EOF
    queued.settimeout(5)
    assert queued.recv(100) == b"-1:shutting-down\n"
    queued.close()


def self_signed(tmp: Path) -> ssl.SSLContext:
    cert, key = tmp / "c.pem", tmp / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return listen.tls_context(str(cert), str(key))


async def test_tls_handshakes_count_and_hold_budget(tmp_path: Path,
                                                    nursery: trio.Nursery) -> None:
    """An unfinished handshake counts against max_connections and holds budget; it
    ends at its deadline, and gives both back."""
    ctx = self_signed(tmp_path)
    budget = MemoryBudget(TLS_HANDSHAKE_BYTES)
    bound = listen.bind_tcp("127.0.0.1:0", listen.LOOPBACK, ctx)
    server = FrontServer(EchoFront(), [bound], max_connections=8, budget=budget,
                         handshake_timeout=1.0)
    await nursery.start(server.run)
    silent = await trio.open_tcp_stream("127.0.0.1", server.ports[0])  # never handshakes
    with trio.fail_after(5):
        while budget.used < TLS_HANDSHAKE_BYTES:
            await trio.sleep(0.01)
    assert server.active == 1
    second = await trio.open_tcp_stream("127.0.0.1", server.ports[0])
    with trio.fail_after(5):
        while server.counters.refused_busy < 1:
            await trio.sleep(0.01)
    with trio.fail_after(5):
        while server.counters.handshake_failures < 1:
            await trio.sleep(0.05)
    assert budget.used == 0
    await silent.aclose()
    await second.aclose()
    await server.drain(1.0)


async def test_capacity_errors_back_off_other_errors_are_raised(
        sock_path: str, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    server = FrontServer(EchoFront(), [listen.bind_unix(sock_path, 0o600)], max_connections=4)
    with trio.fail_after(5):
        await server._accept_failed(server.bound[0], OSError(errno.EMFILE, "Too many"))
    assert server.counters.accept_errors == 1
    with pytest.raises(OSError):
        await server._accept_failed(server.bound[0], OSError(errno.EBADF, "Bad fd"))
    server.stop_accepting()


async def test_emfile_answers_a_queued_peer_busy(sock_path: str) -> None:
    server = FrontServer(EchoFront(), [listen.bind_unix(sock_path, 0o600)], max_connections=4)
    peer = socket.socket(socket.AF_UNIX)
    peer.connect(sock_path)
    with trio.fail_after(5):
        await server._accept_failed(server.bound[0], OSError(errno.EMFILE, "Too many"))
    peer.settimeout(5)
    assert peer.recv(100) == b"-1:busy\n"
    assert server.counters.refused_busy == 1
    peer.close()
    server.stop_accepting()


def test_unix_bind_refuses_a_live_socket_and_replaces_a_stale_one(sock_path: str) -> None:
    live = listen.bind_unix(sock_path, 0o640)
    assert os.stat(sock_path).st_mode & 0o777 == 0o640
    with pytest.raises(SocketPathError, match="another daemon"):
        listen.bind_unix(sock_path, 0o600)
    live.sock.close()  # the file stays: stale
    again = listen.bind_unix(sock_path, 0o600)
    again.sock.close()
    Path(sock_path).unlink()
    Path(sock_path).write_text("not a socket")
    with pytest.raises(SocketPathError, match="not a socket"):
        listen.bind_unix(sock_path, 0o600)


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.0.1:3310", ("127.0.0.1", 3310)),
    ("[::1]:3310", ("::1", 3310)),
    ("localhost:0", ("localhost", 0)),
])
def test_host_port(value: str, expected: tuple[str, int]) -> None:
    assert listen.split_host_port(value) == expected


@pytest.mark.parametrize("value", ["3310", ":3310", "[::1]", "host:port", "h:70000"])
def test_bad_host_port_names_the_key(value: str) -> None:
    with pytest.raises(SocketPathError, match=r"clamd_front\.tcp"):
        listen.split_host_port(value, "clamd_front.tcp")


def test_ipv6_listener_binds() -> None:
    try:
        b = listen.bind_tcp("[::1]:0", listen.LOOPBACK)
    except SocketPathError:
        pytest.skip("no IPv6 loopback here")
    assert b.name.startswith("[::1]:") and b.port > 0
    b.sock.close()


def test_peer_allowed() -> None:
    loop = listen.LOOPBACK
    assert listen.peer_allowed(("127.0.0.1", 5000), loop)
    assert listen.peer_allowed(("::ffff:127.0.0.2", 5000, 0, 0), loop)
    assert not listen.peer_allowed(("10.1.2.3", 5000), loop)
    assert not listen.peer_allowed("/unix/path", loop)
    assert not listen.peer_allowed(("not-an-ip", 1), loop)


def test_socket_remover_helper_removes_only_our_socket(tmp_path: Path) -> None:
    """The root helper unlinks at EOF of its pipe, and only the inode it was given."""
    ours, replaced = str(tmp_path / "ours"), str(tmp_path / "replaced")
    a = listen.bind_unix(ours, 0o600)
    b = listen.bind_unix(replaced, 0o600)
    remover = SocketRemover()
    remover.add(ours)
    remover.add(replaced)
    remover.start_helper()
    assert remover.helper is not None
    c = listen.bind_unix(str(tmp_path / "newer"), 0o600)  # exists with b: another inode
    os.rename(c.name, replaced)  # a newer daemon's socket now stands at the path
    b.sock.close()
    remover.close()
    assert not os.path.exists(ours) and os.path.exists(replaced)
    a.sock.close()
    c.sock.close()


def test_socket_remover_helper_survives_the_daemon_being_killed(tmp_path: Path) -> None:
    """SIGKILL of the daemon closes the pipe: the helper still removes the socket."""
    path = str(tmp_path / "s")
    code = (f"import sys, os, signal; sys.path.insert(0, {str(Path.cwd())!r});"
            "from scand.fronts import listen, unlinker;"
            f"b = listen.bind_unix({path!r}, 0o600); r = unlinker.SocketRemover();"
            f"r.add({path!r}); r.start_helper();"
            "os.kill(os.getpid(), signal.SIGKILL)")
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    for _ in range(200):
        if not os.path.exists(path):
            break
        time.sleep(0.05)
    assert not os.path.exists(path)


async def test_a_fault_before_the_session_costs_one_connection(
        nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch) -> None:
    """The PROXY gate and the TLS handshake run in the connection's task before
    serve_guarded: an unexpected exception there must not end the listener."""
    calls = 0
    real = ProxyGate.resolve

    async def resolve(self: ProxyGate, sock: trio.socket.SocketType) -> object | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("injected into the PROXY gate")
        return await real(self, sock)

    monkeypatch.setattr(ProxyGate, "resolve", resolve)
    server = FrontServer(EchoFront(), [listen.bind_tcp("127.0.0.1:0", listen.LOOPBACK)],
                         max_connections=4, proxy_from=["192.0.2.1"])
    await nursery.start(server.run)
    first = await trio.open_tcp_stream("127.0.0.1", server.ports[0])
    assert await first_bytes(first) == b""  # that connection only: closed
    second = await trio.open_tcp_stream("127.0.0.1", server.ports[0])
    assert await ask(second, b"hi") == b"echo hi"
    assert server.counters.faults == 1 and server.active == 1
    await server.drain(1.0)


async def test_a_denied_peer_in_the_backlog_gets_nothing_at_stop(nursery: trio.Nursery) -> None:
    """The allow-list holds for peers still queued when the daemon stops: nothing is
    read from or written to a peer outside it (not even 'shutting-down')."""
    server = FrontServer(EchoFront(), [listen.bind_tcp("127.0.0.1:0",
                                                       listen.parse_allow(["127.0.0.2"]))],
                         max_connections=4)
    await nursery.start(server.run)
    port = server.ports[0]
    live = trio.socket.socket()
    await live.bind(("127.0.0.2", 0))  # the one allowed peer, so the server runs on
    await live.connect(("127.0.0.1", port))
    live_stream = trio.SocketStream(live)
    assert await ask(live_stream, b"x") == b"echo x"
    server._accepting.cancel()  # stop taking from the backlog, as during a stop
    await trio.testing.wait_all_tasks_blocked()
    queued = socket.create_connection(("127.0.0.1", port))  # from 127.0.0.1: denied
    with trio.fail_after(5):
        await server.drain(1.0)
    got = recv_or_reset(queued)
    queued.close()
    assert got == b""


@pytest.mark.parametrize("code", [errno.ECONNABORTED, errno.EPROTO, errno.ENETUNREACH,
                                  errno.ETIMEDOUT, errno.EPERM])
async def test_a_peer_that_failed_before_accept_costs_only_itself(
        sock_path: str, code: int) -> None:
    """Linux's accept() passes a queued connection's own network error up (and a
    firewall's EPERM): trio.serve_listeners skips these; raising one would end the
    listener, and the daemon, for one peer's reset."""
    server = FrontServer(EchoFront(), [listen.bind_unix(sock_path, 0o600)], max_connections=4)
    with trio.fail_after(5):
        await server._accept_failed(server.bound[0], OSError(code, os.strerror(code)))
    server.stop_accepting()


async def test_emfile_says_nothing_to_a_denied_peer() -> None:
    """Out of descriptors, the one peer taken to be told busy is still under the
    allow-list: a peer outside it is closed without a byte."""
    server = FrontServer(EchoFront(), [listen.bind_tcp("127.0.0.1:0",
                                                       listen.parse_allow(["192.0.2.0/24"]))],
                         max_connections=4)
    peer = socket.create_connection(("127.0.0.1", server.ports[0]))
    with trio.fail_after(5):
        await server._accept_failed(server.bound[0], OSError(errno.EMFILE, "Too many"))
    got = recv_or_reset(peer)
    peer.close()
    server.stop_accepting()
    assert got == b"" and server.counters.refused_busy == 0
