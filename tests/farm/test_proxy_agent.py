"""PROXY protocol v2 and the agent-check on a real daemon (no HAProxy: raw sockets from
chosen loopback addresses play the balancer and the clients).

127.0.0.1 is the balancer (``farm.proxy_from``); 127.0.0.2 is a client that is
not. The allow-lists (``server.tcp_allow``, ``clamd_front.tcp_allow``) are
127.0.0.0/8, so 192.0.2.1 named in a header is refused and 127.0.0.9 is served.
"""

from __future__ import annotations

import signal
import time

import pytest

from scand.fronts.proxyproto import build
from tests.conftest import EICAR, Daemon, DaemonFactory
from tests.farm.farmutil import connect, exchange, free_port, read_reply, stream_request, wait_port

BALANCER, OTHER = "127.0.0.1", "127.0.0.2"


def header(source: str, port: int = 40000) -> bytes:
    return build("PROXY", (source, port), ("127.0.0.1", 1))


@pytest.fixture
def farm_daemon(scand_daemon: DaemonFactory) -> tuple[Daemon, int, int, int]:
    sophie, clamd, agent = free_port(), free_port(), free_port()
    d = scand_daemon(config=(
        f'[server]\ntcp = ["127.0.0.1:{sophie}"]\ntcp_allow = ["127.0.0.0/8"]\n'
        f'[clamd_front]\ntcp = ["127.0.0.1:{clamd}"]\ntcp_allow = ["127.0.0.0/8"]\n'
        f'[farm]\nproxy_from = ["{BALANCER}/32"]\nagent = "127.0.0.1:{agent}"\n'
        f'agent_allow = ["{BALANCER}/32"]\ndrain_delay = 2.0\n'))
    for port in (sophie, clamd, agent):
        wait_port(port)
    return d, sophie, clamd, agent


def test_proxy_header_from_the_balancer_and_the_real_client_allow_list(
        farm_daemon: tuple[Daemon, int, int, int]) -> None:
    d, sophie, clamd, _ = farm_daemon
    # Through the balancer, for an allowed client: scanned.
    assert exchange(sophie, header("127.0.0.9") + stream_request(EICAR)) == \
        b"1:Eicar-Test-Signature\n"
    assert exchange(sophie, header("127.0.0.9") + stream_request(b"hello")) == b"0\n"
    assert exchange(clamd, header("127.0.0.9") + b"zPING\0", end=b"\0") == b"PONG\0"
    # The balancer's own health check (LOCAL) is the balancer itself.
    assert exchange(sophie, build("LOCAL") + b"PING\n") == b"PONG\n"
    # The header is split over several writes: still read exactly.
    with connect(sophie) as s:
        h = header("127.0.0.9")
        for i in range(0, len(h), 5):
            s.sendall(h[i:i + 5])
            time.sleep(0.01)
        s.sendall(b"PING\n")
        assert read_reply(s) == b"PONG\n"
    # A real client outside the allow-list, named by the balancer: closed unanswered.
    assert exchange(sophie, header("192.0.2.1") + b"PING\n") == b""
    assert exchange(clamd, header("192.0.2.1") + b"zPING\0", end=b"\0") == b""
    # From the balancer the header is required: a bare request is refused.
    assert exchange(sophie, b"PING\n") == b""
    assert exchange(clamd, b"zPING\0", end=b"\0") == b""
    # Version 1 (text) is not accepted either.
    assert exchange(sophie, b"PROXY TCP4 127.0.0.9 127.0.0.1 1 2\r\nPING\n") == b""
    log = d.log()
    assert log.count('"proxy_refused"') == 5, log
    assert '"client": "192.0.2.1"' in log and "client not in the allow-list" in log


def test_proxy_header_from_anyone_else_is_refused(
        farm_daemon: tuple[Daemon, int, int, int]) -> None:
    d, sophie, clamd, _ = farm_daemon
    # A client that is not a balancer speaks directly (it is on the allow-list) ...
    assert exchange(sophie, b"PING\n", source=OTHER) == b"PONG\n"
    assert exchange(sophie, stream_request(EICAR), source=OTHER) == b"1:Eicar-Test-Signature\n"
    assert exchange(clamd, b"zPING\0", source=OTHER, end=b"\0") == b"PONG\0"
    # ... but may not claim to come through the balancer, in either version.
    assert exchange(sophie, header("127.0.0.9") + b"PING\n", source=OTHER) == b""
    assert exchange(clamd, header("127.0.0.9") + b"zPING\0", source=OTHER, end=b"\0") == b""
    assert exchange(sophie, b"PROXY TCP4 127.0.0.9 127.0.0.1 1 2\r\nPING\n",
                    source=OTHER) == b""
    log = d.log()
    assert log.count("PROXY header from a peer not in proxy_from") == 3, log


def test_agent_answers_weight_and_drain_before_the_listeners_close(
        farm_daemon: tuple[Daemon, int, int, int]) -> None:
    d, sophie, _, agent = farm_daemon
    with connect(agent) as s:
        assert read_reply(s) == b"up ready 100%\n"
        assert s.recv(1) == b""  # one line, then closed
    with connect(agent, source=OTHER) as s:  # not in agent_allow: nothing
        assert read_reply(s) == b""
    d.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    # drain_delay: the agent says drain while the listeners still serve.
    assert exchange(agent, b"") == b"drain\n"
    assert exchange(sophie, build("LOCAL") + b"PING\n") == b"PONG\n"
    assert d.proc.wait(15) == 0
