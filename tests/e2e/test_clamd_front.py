"""The clamd front's hardening against the real daemon: TCP allow-list, TLS with client
certificates, connection limit, deadlines, IDSESSION pipelining, unchecked answers,
FILDES descriptor hygiene, SHUTDOWN off by default. Loopback addresses only."""

from __future__ import annotations

import array
import contextlib
import os
import resource
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import EICAR, DaemonFactory

EICAR_NAME = "Eicar-Test-Signature"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def chunk(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data


def talk(path: str, payload: bytes, timeout: float = 10.0) -> bytes:
    """Send, half-close, read to EOF."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    out = b""
    while chunk_ := s.recv(65536):
        out += chunk_
    s.close()
    return out


def start(scand_daemon: DaemonFactory, tmp: Path, config: str = "", *args: str,
          **kw: object) -> tuple[object, str]:
    sock = str(tmp / f"c{len(list(tmp.glob('c*')))}.ctl")
    d = scand_daemon("--clamd-socket", sock, *args, config=config, **kw)
    return d, sock


def test_tcp_allow_list(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    port = free_port()
    start(scand_daemon, short_tmp,
          f'[clamd_front]\ntcp = ["127.0.0.1:{port}"]\ntcp_allow = ["127.0.0.1/32"]\n')
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"zPING\0")
        assert s.recv(100) == b"PONG\0"
    # 127.0.0.1 outside the list (TEST-NET-1 only, which is never contacted): closed
    # before a byte is read, nothing written, logged.
    port2 = free_port()
    d, _ = start(scand_daemon, short_tmp,
                 f'[clamd_front]\ntcp = ["127.0.0.1:{port2}"]\ntcp_allow = ["192.0.2.0/24"]\n')
    outsider = socket.create_connection(("127.0.0.1", port2), timeout=5)
    try:
        outsider.sendall(b"zPING\0")
        got = outsider.recv(100)
    except (ConnectionResetError, BrokenPipeError):
        got = b""
    outsider.close()
    assert got == b""
    time.sleep(0.2)
    log = d.log()  # type: ignore[attr-defined]
    assert '"connection_denied"' in log and '"front": "clamd"' in log and "127.0.0.1" in log


def make_pki(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (openssl CLI)."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
        "-keyout", "ca.key", "-out", "ca.pem")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
            f"{name}.key", "-out", f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", f"{name}.pem")
    return {n: d / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def test_tls_with_client_certificate(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    pki = make_pki(short_tmp)
    port = free_port()
    start(scand_daemon, short_tmp,
          f'[clamd_front]\ntcp = ["127.0.0.1:{port}"]\ntcp_allow = ["127.0.0.0/8"]\n'
          f'tls_cert = "{pki["server.pem"]}"\ntls_key = "{pki["server.key"]}"\n'
          f'tls_client_ca = "{pki["ca.pem"]}"\n')
    ctx = ssl.create_default_context(cafile=str(pki["ca.pem"]))
    ctx.load_cert_chain(str(pki["client.pem"]), str(pki["client.key"]))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(b"zINSTREAM\0" + chunk(EICAR) + chunk(b""))
        assert s.recv(200) == f"stream: {EICAR_NAME} FOUND\0".encode()
    # Without a client certificate: the handshake is refused.
    bare = ssl.create_default_context(cafile=str(pki["ca.pem"]))
    def without_cert() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                bare.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"zPING\0")
            if not s.recv(100):
                raise ConnectionResetError("closed")

    with pytest.raises((ssl.SSLError, OSError)):
        without_cert()
    # Plain text to the TLS port: no PONG, the connection is closed.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"zPING\0")
        try:
            got = s.recv(100)
            while got and b"PONG" not in got:
                more = s.recv(100)
                if not more:
                    break
                got += more
        except ConnectionResetError:
            got = b""
        assert b"PONG" not in got


def test_connection_limit_and_deadlines(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    _, sock = start(scand_daemon, short_tmp,
                    "[server]\nmax_connections = 2\nrequest_timeout = 1.0\n")
    idle = []
    for _ in range(2):
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        idle.append(s)
    time.sleep(0.2)
    extra = socket.socket(socket.AF_UNIX)
    extra.settimeout(2)
    extra.connect(sock)
    t0 = time.monotonic()
    assert extra.recv(100) == b"scand: busy ERROR\n"
    assert time.monotonic() - t0 < 1.0  # at once, not after a timeout
    extra.close()
    # No command within the request deadline: clamd's own words, then close.
    for s in idle:
        s.settimeout(5)
        assert s.recv(100) == b"COMMAND READ TIMED OUT\n"
        s.close()
    time.sleep(0.2)
    # A stalled INSTREAM: the deadline runs from its first byte.
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(sock)
    s.sendall(b"zINSTREAM\0" + chunk(b"abc")[:5])
    assert s.recv(100) == b"stream: timeout ERROR\0"
    s.close()


def test_session_pipelining(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    _, sock = start(scand_daemon, short_tmp)
    clean = short_tmp / "clean.txt"
    clean.write_text("clean\n")
    want = {}
    payload = b"zIDSESSION\0"
    for i in range(1, 41):
        kind = i % 4
        if kind == 0:
            payload += b"zINSTREAM\0" + chunk(EICAR[:30]) + chunk(EICAR[30:]) + chunk(b"")
            want[i] = f"{i}: stream: {EICAR_NAME} FOUND\0"
        elif kind == 1:
            payload += b"nPING\n"
            want[i] = f"{i}: PONG\n"
        elif kind == 2:
            payload += f"zSCAN {clean}\0".encode()
            want[i] = f"{i}: {clean}: OK\0"
        else:
            payload += b"nINSTREAM\n" + chunk(b"hello") + chunk(b"")
            want[i] = f"{i}: stream: OK\n"
    out = talk(sock, payload + b"zEND\0").decode()
    got = {}
    rest = out
    while rest:
        # Each reply ends in its own command's terminator.
        cut = min(p for p in (rest.find("\0"), rest.find("\n")) if p >= 0) + 1
        line, rest = rest[:cut], rest[cut:]
        got[int(line.split(":", 1)[0])] = line
    assert got == want


def test_unchecked_never_ok_and_as_found(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    big = short_tmp / "big.bin"
    big.write_bytes(b"x" * 5000)
    limits = "[server]\nmax_stream_bytes = 1000\n[limits]\nmax_file_size = 1000\n"
    _, sock = start(scand_daemon, short_tmp, limits)
    assert talk(sock, f"nSCAN {big}\n".encode()) == f"{big}: too-large ERROR\n".encode()
    assert talk(sock, b"zINSTREAM\0" + chunk(b"x" * 1001)) == (
        b"INSTREAM size limit exceeded. ERROR\0")
    # For OK/FOUND-only clients (rspamd): a named FOUND, on request.
    _, sock2 = start(scand_daemon, short_tmp, limits + "[clamd_front]\nunchecked_as_found = true\n")
    assert talk(sock2, f"nSCAN {big}\n".encode()) == (
        f"{big}: Scand.Unchecked.too-large FOUND\n".encode())
    assert talk(sock2, b"zINSTREAM\0" + chunk(b"x" * 1001)) == (
        b"stream: Scand.Unchecked.too-large FOUND\0")


def test_engine_failures_are_errors(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    _, sock = start(scand_daemon, short_tmp, "[pool]\nscan_timeout = 1.0\n", "--engine", "chaos")
    hang = short_tmp / "hang.txt"
    hang.write_text("SCAND-CHAOS hang 30\n")
    crash = short_tmp / "crash.txt"
    crash.write_text("SCAND-CHAOS crash\n")
    assert talk(sock, f"zSCAN {hang}\0".encode()) == f"{hang}: timeout ERROR\0".encode()
    assert talk(sock, f"zCONTSCAN {crash}\0".encode()) == (
        f"{crash}: worker-crashed ERROR\0".encode())
    assert talk(sock, b"zINSTREAM\0" + chunk(b"SCAND-CHAOS crash\n") + chunk(b"")) == (
        b"stream: worker-crashed ERROR\0")


def test_fildes_and_shutdown(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    d, sock = start(scand_daemon, short_tmp)
    target = short_tmp / "e.com"
    target.write_bytes(EICAR)
    proc = psutil.Process(d.proc.pid)  # type: ignore[attr-defined]
    before = proc.num_fds()
    for _ in range(30):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(sock)
        fd = os.open(target, os.O_RDONLY)
        s.sendall(b"zFILDES\0")
        s.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
        os.close(fd)
        reply = s.recv(200)
        assert reply.startswith(b"fd[") and reply.endswith(f"]: {EICAR_NAME} FOUND\0".encode())
        s.close()
    time.sleep(0.3)
    assert proc.num_fds() <= before + 2  # every received descriptor was closed
    # SHUTDOWN and QUIT are off by default: answered as a disabled command.
    disabled = b"SHUTDOWN command disabled by clamd configuration. ERROR\n"
    assert talk(sock, b"nSHUTDOWN\n") == disabled
    assert talk(sock, b"QUIT\n") == disabled
    assert d.proc.poll() is None  # type: ignore[attr-defined]
    # SIGTERM removes the clamd socket with the Sophie one.
    assert d.stop() == 0  # type: ignore[attr-defined]
    assert not os.path.exists(sock)


def test_stream_memory_budget(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    """Streams held in the daemon are capped across connections, not only per connection."""
    _, sock = start(scand_daemon, short_tmp, "[clamd_front]\nstream_memory_mb = 1\n")
    holder = socket.socket(socket.AF_UNIX)
    holder.settimeout(10)
    holder.connect(sock)
    holder.sendall(b"zINSTREAM\0" + struct.pack("!I", 900_000) + b"x" * 1000)  # 900 KB promised
    time.sleep(0.3)
    # Refused at the chunk header, before its data is read (as clamd's size limit).
    assert talk(sock, b"zINSTREAM\0" + struct.pack("!I", 200_000)) == b"stream: busy ERROR\0"
    holder.close()  # gone mid-stream: its share comes back
    time.sleep(0.3)
    assert talk(sock, b"zINSTREAM\0" + chunk(b"y" * 200_000) + chunk(b"")) == b"stream: OK\0"


def test_session_that_never_reads_is_cut_off(scand_daemon: DaemonFactory,
                                             short_tmp: Path) -> None:
    """A pipelining client that does not read its replies cannot pin the connection."""
    _, sock = start(scand_daemon, short_tmp, "[server]\nrequest_timeout = 1.0\n")
    s = socket.socket(socket.AF_UNIX)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(sock)
    s.sendall(b"zIDSESSION\0")
    sent = 0
    with contextlib.suppress(OSError):
        s.setblocking(False)
        for _ in range(5000):
            s.send(b"zSTATS\0")
            sent += 1
    time.sleep(3)  # the daemon's send stalls; after request_timeout it gives up
    s.setblocking(True)
    got = b""
    while True:
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            break
        except TimeoutError:
            pytest.fail("the daemon kept a connection that does not read")
        if not data:
            break
        got += data
    s.close()
    assert got.count(b"\nEND\0") < sent  # cut off, not every reply was delivered
    assert talk(sock, b"zPING\0") == b"PONG\0"


def test_low_nofile_keeps_serving(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    """200 clients at once on 64 descriptors: each gets FOUND or busy, never OK, and
    the daemon serves normally once they have left."""
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    target = short_tmp / "e.com"
    target.write_bytes(EICAR)
    _, sock = start(scand_daemon, short_tmp, "", preexec=low_limit)
    clients = []
    for _ in range(200):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(30)
        try:
            s.connect(sock)
            s.sendall(f"zSCAN {target}\0".encode())
        except OSError:
            s.close()
            continue
        clients.append(s)
    replies = []
    for s in clients:
        out = b""
        with contextlib.suppress(OSError):
            while data := s.recv(4096):
                out += data
        s.close()
        replies.append(out)
    found = f"{target}: {EICAR_NAME} FOUND\0".encode()
    assert all(r in (found, b"scand: busy ERROR\n") for r in replies), set(replies)
    assert replies.count(found) > 0
    for _ in range(10):
        assert talk(sock, f"zSCAN {target}\0".encode()) == found


def test_client_gone_cancels_its_scan(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    d, sock = start(scand_daemon, short_tmp, "[pool]\ncancel_grace = 0.2\n", "--engine", "chaos")
    hang = short_tmp / "hang.txt"
    hang.write_text("SCAND-CHAOS hang 30\n")
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(f"zSCAN {hang}\0".encode())
    time.sleep(0.5)
    s.close()  # gone while its scan runs
    deadline = time.monotonic() + 10
    while d.stats()["pool"]["recycles"]["cancel"] < 1:  # type: ignore[attr-defined, index]
        assert time.monotonic() < deadline, "the scan of a vanished client kept running"
        time.sleep(0.1)
    assert talk(sock, b"zPING\0") == b"PONG\0"
