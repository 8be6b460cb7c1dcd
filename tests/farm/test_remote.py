"""Remote scanning: Sophie over TCP and TLS on loopback, the allow-list, what a TCP
client may ask, and clients given several servers failing over."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clients.scandclient import Client, Infected, ScandUnavailable, Unchecked
from tests.conftest import EICAR, ROOT, Daemon, DaemonFactory


def tcp_ports(d: Daemon, limit: float = 10.0) -> list[tuple[int, bool]]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = [(int(json.loads(line)["listen"].rpartition(":")[2]), json.loads(line)["tls"])
                 for line in d.log().splitlines() if '"tcp_ready"' in line]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(d.log())


def ask_tcp(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return buf


def make_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_stream_over_tcp_and_what_a_remote_peer_may_ask(scand_daemon: DaemonFactory,
                                                        short_tmp: Path) -> None:
    d = scand_daemon(config='[server]\ntcp = ["127.0.0.1:0"]\n')
    [(port, tls)] = tcp_ports(d)
    assert not tls
    assert ask_tcp(port, b"STREAM %d\n%s" % (len(EICAR), EICAR)) == b"1:Eicar-Test-Signature\n"
    assert ask_tcp(port, b"STREAM 5\nhello") == b"0\n"
    assert ask_tcp(port, b"PING\n") == b"PONG\n"
    local = short_tmp / "local.txt"
    local.write_bytes(EICAR)
    assert ask_tcp(port, f"{local}\n".encode()).startswith(b"-1:not-allowed")
    assert ask_tcp(port, b"RELOAD\n").startswith(b"-1:not-allowed")
    assert d.ask(f"{local}\n".encode()) == b"1:Eicar-Test-Signature\n"  # Unix: still fine


def test_peer_outside_allow_list_closed_before_a_byte(scand_daemon: DaemonFactory) -> None:
    d = scand_daemon(config='[server]\ntcp = ["127.0.0.1:0"]\ntcp_allow = ["10.0.0.0/8"]\n')
    [(port, _)] = tcp_ports(d)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        assert s.recv(100) == b""
    assert '"connection_denied"' in d.log() and '"front": "sophie"' in d.log()


def test_tls(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    cert, key = make_cert(short_tmp)
    d = scand_daemon(config=f'[server]\ntls = ["127.0.0.1:0"]\ntls_cert = "{cert}"\n'
                            f'tls_key = "{key}"\n')
    [(port, tls)] = tcp_ports(d)
    assert tls
    ctx = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        for _ in range(3):  # several requests on one TLS connection
            s.sendall(b"STREAM %d\n%s" % (len(EICAR), EICAR))
            assert s.recv(100) == b"1:Eicar-Test-Signature\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"STREAM 5\nhello")  # plaintext to a TLS port: no verdict
        assert not raw.recv(100).startswith(b"0")
    os.environ["SCAND_TLS_CA"] = str(cert)
    try:
        with Client(f"tls://127.0.0.1:{port}", timeout=10) as c:
            assert c.scan_bytes(EICAR) == Infected("Eicar-Test-Signature")
            assert c.ping()
    finally:
        del os.environ["SCAND_TLS_CA"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scan_cli(servers: str, target: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clients.scand_scan", "--stream", "--timeout", "20",
         "--socket", servers, str(target)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, timeout=60)


@pytest.mark.slow
def test_three_servers_one_stopped_one_busy_third_serves(
        scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    cert, key = make_cert(short_tmp)
    hang = short_tmp / "hang.txt"
    hang.write_bytes(b"SCAND-CHAOS hang 30\n")
    busy = scand_daemon("--engine", "chaos", workers=1,
                        config='[server]\ntcp = ["127.0.0.1:0"]\nshutdown_grace = 0.5\n'
                               "[pool]\nqueue_size = 0\n")
    [(busy_port, _)] = tcp_ports(busy)
    good = scand_daemon(config=f'[server]\ntls = ["127.0.0.1:0"]\ntls_cert = "{cert}"\n'
                               f'tls_key = "{key}"\n')
    [(good_port, _)] = tcp_ports(good)
    stopped = f"tcp://127.0.0.1:{_free_port()}"  # nobody listens there
    holder = threading.Thread(target=lambda: busy.ask(f"{hang}\n".encode(), timeout=60),
                              daemon=True)
    holder.start()
    deadline = time.monotonic() + 10
    while busy.stats()["pool"]["busy"] != 1:  # type: ignore[index]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert ask_tcp(busy_port, b"STREAM 2\nhi").startswith(b"-1:busy")
    servers = [stopped, f"tcp://127.0.0.1:{busy_port}", f"tls://127.0.0.1:{good_port}"]
    infected = short_tmp / "eicar.com"
    infected.write_bytes(EICAR)
    env = {"SCAND_TLS_CA": str(cert)}
    # Every rotation, so every server comes first for some client (start = pid % 3).
    for r in range(3):
        order = ",".join(servers[r:] + servers[:r])
        out = scan_cli(order, infected, env)
        assert out.returncode == 1, (order, out.stdout, out.stderr)
        assert "Eicar-Test-Signature" in out.stdout
    os.environ["SCAND_TLS_CA"] = str(cert)
    try:
        with Client(",".join(servers), timeout=20) as c:
            for _ in range(5):
                assert c.scan_bytes(EICAR) == Infected("Eicar-Test-Signature")
        # Only the busy one and the stopped one: -1:busy comes back, never a verdict.
        with Client(",".join(servers[:2]), timeout=20) as c:
            v = c.scan_bytes(EICAR)
            assert isinstance(v, Unchecked) and v.reason == "busy"
    finally:
        del os.environ["SCAND_TLS_CA"]
    # All three down: the temporary-failure exit code (2 for scand-scan), no verdict.
    good.stop()
    busy.stop()
    out = scan_cli(",".join(servers), infected, env)
    assert out.returncode == 2, (out.stdout, out.stderr)
    with pytest.raises(ScandUnavailable), Client(",".join(servers), timeout=5) as c:
        c.scan_bytes(EICAR)


def test_bad_server_entries_are_temporary_failures(short_tmp: Path) -> None:
    for spec in ("tcp://nohostport", "tls://:x", ",", "unix:" + str(short_tmp / "none")):
        with pytest.raises(ScandUnavailable), Client(spec, timeout=5) as c:
            c.scan_bytes(b"x")
    target = short_tmp / "mail.eml"
    target.write_bytes(b"hello")
    out = scan_cli("tcp://bad,unix:/nonexistent/sock", target, {})
    assert out.returncode == 2, out.stderr
