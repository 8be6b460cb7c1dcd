"""One Sophie connection on a real socket pair (scand.fronts.sophie, direct mode): the
main task reads by itself and a hang-up during a scan is seen by the daemon's one
hangup watch (scand.fronts.hangup). The same behaviour test_connection.py checks on
memory streams, where the reader task does this."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import trio

from scand.fronts import hangup
from scand.fronts.sophie import ClientConnection
from scand.fronts.transport import SocketTransport
from tests.inproc.test_connection import FakeHandler, start


@dataclass
class Pair:
    client: trio.SocketStream
    conn: ClientConnection
    handler: FakeHandler
    done: trio.Event

    async def read_lines(self, n: int) -> list[bytes]:
        buf = b""
        while buf.count(b"\n") < n and (chunk := await self.client.receive_some(4096)):
            buf += chunk
        return buf.splitlines(keepends=True)


@pytest.fixture
async def pair(nursery: trio.Nursery) -> AsyncIterator[Pair]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    client = trio.SocketStream(trio.socket.from_stdlib_socket(a))
    transport = SocketTransport(trio.socket.from_stdlib_socket(b))
    yield Pair(client, *start(nursery, client, transport))
    client.socket.close()


async def test_pipelined_requests_are_answered_in_order(pair: Pair,
                                                       autojump_clock: object) -> None:
    pair.handler.delay = 1.0
    await pair.client.send_all(b"/a\nPING\nSTREAM 3\nabc/b\n")
    assert await pair.read_lines(4) == [b"0\n", b"PONG\n", b"1:Len3\n", b"0\n"]
    assert hangup.current().watched == 0  # no scan of this socket is watched now


async def test_a_client_that_leaves_cancels_its_scan(pair: Pair,
                                                     autojump_clock: object) -> None:
    pair.handler.delay = 100.0
    await pair.client.send_all(b"/slow\n")
    await trio.sleep(1.0)
    pair.client.socket.close()  # a full close: POLLHUP
    await pair.done.wait()
    assert pair.handler.cancelled == 1
    assert trio.current_time() < 10.0
    assert hangup.current().watched == 0


async def test_half_close_still_gets_its_replies(pair: Pair, autojump_clock: object) -> None:
    pair.handler.delay = 2.0
    await pair.client.send_all(b"/a\n/b\n")
    await pair.client.send_eof()  # SHUT_WR: no more requests, replies still wanted
    assert await pair.read_lines(2) == [b"0\n", b"0\n"]
    assert pair.handler.cancelled == 0
    await pair.done.wait()


async def test_request_deadline(pair: Pair, autojump_clock: object) -> None:
    t0 = trio.current_time()
    await pair.client.send_all(b"/s")
    assert await pair.read_lines(1) == [b"-1:timeout request not completed in time\n"]
    assert trio.current_time() - t0 == pytest.approx(5.0)
    await pair.done.wait()


async def test_an_idle_connection_closes_quietly(pair: Pair, autojump_clock: object) -> None:
    t0 = trio.current_time()
    await pair.done.wait()
    assert trio.current_time() - t0 == pytest.approx(30.0)
    assert await pair.client.receive_some(10) == b""  # nothing was written


async def test_drain_answers_the_request_in_flight_then_closes(
        pair: Pair, autojump_clock: object) -> None:
    pair.handler.delay = 3.0
    await pair.client.send_all(b"/inflight\n")
    await trio.sleep(1.0)
    pair.conn.drain()
    assert await pair.read_lines(1) == [b"0\n"]
    await pair.done.wait()
    assert trio.current_time() < 5.0


async def test_drain_closes_an_idle_connection_at_once(pair: Pair,
                                                       autojump_clock: object) -> None:
    await pair.client.send_all(b"PING\n")
    assert await pair.read_lines(1) == [b"PONG\n"]
    await trio.sleep(1.0)
    t0 = trio.current_time()
    pair.conn.drain()
    await pair.done.wait()
    assert trio.current_time() - t0 < 0.1
    assert await pair.client.receive_some(10) == b""


async def test_a_client_gone_before_its_scan_starts_cancels_it(
        pair: Pair, autojump_clock: object) -> None:
    # The socket is in the hangup watch from its first scan to its close: a peer that
    # hangs up between requests is remembered, and the next scan it sent is cancelled.
    pair.handler.delay = 1.0
    await pair.client.send_all(b"/first\n")
    assert await pair.read_lines(1) == [b"0\n"]
    assert hangup.current().connections == 1 and hangup.current().watched == 0
    pair.handler.delay = 100.0
    await pair.client.send_all(b"/second\n")
    pair.client.socket.close()  # sent, then gone: POLLHUP
    await pair.done.wait()
    assert pair.handler.cancelled == 1
    assert trio.current_time() < 10.0
    assert hangup.current().connections == 0  # left the watch before its close
