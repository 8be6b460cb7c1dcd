"""TLS end to end through a real HAProxy (docs/FARM.md's recommendation): HAProxy
passes the TLS bytes in TCP mode after a PROXY v2 header, health checks PING inside
TLS (check-ssl), and scand's allow-list applies to the mail host the header names
(127.0.0.5 allowed, 127.0.0.6 not), although both come through the balancer."""

from __future__ import annotations

import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.farm_load import SERVER_OPTIONS
from tests.conftest import EICAR
from tests.farm.farmprocs import HAProxy, haproxy_config
from tests.farm.farmutil import free_port, read_reply, stream_request
from tests.farm.scandfarm import Host, start_host
from tests.farm.test_remote import make_cert

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None,
                                reason="haproxy (Debian package) is not installed")

ALLOWED, OTHER = "127.0.0.5", "127.0.0.6"


@pytest.fixture
def tls_farm(short_tmp: Path) -> Iterator[tuple[HAProxy, Host, int, Path]]:
    cert, key = make_cert(short_tmp)
    sophie, clamd, agent = free_port(), free_port(), free_port()
    host = Host("s1", 0, sophie, clamd, agent, (
        f'[server]\ntls = ["127.0.0.1:{sophie}"]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
        f'tcp_allow = ["{ALLOWED}/32"]\n'
        f'[clamd_front]\ntcp = ["127.0.0.1:{clamd}"]\ntcp_allow = ["{ALLOWED}/32"]\n'
        f'tls_cert = "{cert}"\ntls_key = "{key}"\n'
        f'[farm]\nproxy_from = ["127.0.0.1/32"]\nagent = "127.0.0.1:{agent}"\n'))
    start_host(short_tmp, host)
    front = free_port()
    hap = HAProxy(short_tmp, haproxy_config(
        front, free_port(), [host.ports()],
        options=SERVER_OPTIONS + " check-ssl verify none"))
    try:
        yield hap, host, front, cert
    finally:
        hap.stop()
        if host.daemon is not None:
            host.daemon.stop()


def tls_ask(port: int, cert: Path, source: str, request: bytes) -> bytes:
    ctx = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(request)
                return read_reply(s)
        except (ssl.SSLError, ConnectionError):
            return b""


def test_tls_end_to_end_through_haproxy_and_the_real_client_allow_list(
        tls_farm: tuple[HAProxy, Host, int, Path]) -> None:
    hap, host, front, cert = tls_farm
    deadline = time.monotonic() + 15
    while hap.servers("sophie")["s1"]["status"] != "UP":  # PING inside TLS, after PROXY
        assert time.monotonic() < deadline, hap.servers("sophie")["s1"]
        time.sleep(0.05)
    assert tls_ask(front, cert, ALLOWED, stream_request(EICAR)) == b"1:Eicar-Test-Signature\n"
    assert tls_ask(front, cert, ALLOWED, stream_request(b"hello")) == b"0\n"
    # The same balancer, a mail host outside the allow-list: closed before TLS.
    assert tls_ask(front, cert, OTHER, b"PING\n") == b""
    assert host.daemon is not None
    log = host.daemon.log()
    assert f'"client": "{OTHER}"' in log and "client not in the allow-list" in log
