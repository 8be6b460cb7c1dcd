"""In-process tests of one Sophie connection (scand.fronts.sophie) with a fake handler,
on trio memory streams and the autojump clock: no socket, no process, no real sleep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from scand.events import BadRequest, Command, Event, ScanPath, ScanStream
from scand.fronts.accept import Counters, serve_guarded
from scand.fronts.sophie import ClientConnection
from scand.fronts.transport import StreamTransport, Transport


@dataclass
class FakeHandler:
    """Answers PING, echoes scans after ``delay`` (fake) seconds, records what it saw."""

    delay: float = 0.0
    max_stream: int = 1024
    idle_timeout: float = 30.0
    request_timeout: float = 5.0
    seen: list[Event] = field(default_factory=list)
    cancelled: int = 0

    async def handle(self, event: Event) -> bytes:
        self.seen.append(event)
        if isinstance(event, Command):
            return b"PONG\n"
        if isinstance(event, BadRequest):
            return b"-1:" + str(event.reason).encode() + b"\n"
        try:
            await trio.sleep(self.delay)
        except trio.Cancelled:
            self.cancelled += 1
            raise
        if isinstance(event, ScanPath):
            return b"0\n"
        assert isinstance(event, ScanStream)
        return b"1:Len" + str(len(event.data)).encode() + b"\n"


@dataclass
class Harness:
    client: trio.abc.HalfCloseableStream
    transport: StreamTransport
    conn: ClientConnection
    handler: FakeHandler
    done: trio.Event

    async def read_lines(self, n: int) -> list[bytes]:
        buf = b""
        while buf.count(b"\n") < n:
            chunk = await self.client.receive_some(4096)
            if not chunk:
                break
            buf += chunk
        return buf.splitlines(keepends=True)


def start(nursery: trio.Nursery, client: trio.abc.HalfCloseableStream,
          transport: Transport) -> tuple[ClientConnection, FakeHandler, trio.Event]:
    """Serve one connection on ``transport`` in ``nursery``: (session, handler, done)."""
    handler = FakeHandler()
    conn = ClientConnection(transport, handler)
    done = trio.Event()

    async def serve() -> None:
        try:
            await serve_guarded("sophie", conn, transport, Counters())  # closes the transport
        finally:
            done.set()

    nursery.start_soon(serve)
    return conn, handler, done


@pytest.fixture
async def harness(nursery: trio.Nursery) -> AsyncIterator[Harness]:
    client, server = trio.testing.memory_stream_pair()
    transport = StreamTransport(server)
    yield Harness(client, transport, *start(nursery, client, transport))


async def test_pipelined_requests_are_answered_in_order(harness: Harness,
                                                       autojump_clock: object) -> None:
    harness.handler.delay = 1.0
    await harness.client.send_all(b"/a\nPING\nSTREAM 3\nabc/b\n")
    assert await harness.read_lines(4) == [b"0\n", b"PONG\n", b"1:Len3\n", b"0\n"]


async def test_request_split_byte_by_byte(harness: Harness) -> None:
    for byte in b"STREAM 5\nhello":
        await harness.client.send_all(bytes([byte]))
    assert await harness.read_lines(1) == [b"1:Len5\n"]


async def test_request_deadline_runs_from_the_first_byte(harness: Harness,
                                                         autojump_clock: object) -> None:
    """A client dribbling a byte a second does not reset the deadline."""
    t0 = trio.current_time()
    await harness.client.send_all(b"/s")
    for _ in range(3):
        await trio.sleep(1.0)
        await harness.client.send_all(b"x")
    lines = await harness.read_lines(1)
    assert lines == [b"-1:timeout request not completed in time\n"]
    assert 5.0 <= trio.current_time() - t0 < 5.5
    await harness.done.wait()


async def test_idle_connection_closes_quietly(harness: Harness, autojump_clock: object) -> None:
    t0 = trio.current_time()
    await harness.done.wait()
    assert trio.current_time() - t0 == pytest.approx(30.0)
    assert await harness.client.receive_some(10) == b""  # nothing was written


async def test_half_close_still_gets_its_replies(harness: Harness,
                                                 autojump_clock: object) -> None:
    harness.handler.delay = 2.0
    await harness.client.send_all(b"/a\n/b\n")
    await harness.client.send_eof()  # SHUT_WR: no more requests, replies still wanted
    assert await harness.read_lines(2) == [b"0\n", b"0\n"]


async def test_a_client_that_leaves_cancels_its_scan(harness: Harness,
                                                     autojump_clock: object) -> None:
    harness.handler.delay = 100.0
    await harness.client.send_all(b"/slow\n")
    await trio.sleep(1.0)
    harness.transport.gone = True  # the peer fully closed (POLLHUP)
    await harness.client.aclose()
    await harness.done.wait()
    assert harness.handler.cancelled == 1
    assert trio.current_time() < 10.0


async def test_bad_request_is_answered_and_the_connection_goes_on(harness: Harness) -> None:
    await harness.client.send_all(b"relative/path\n/after\n")
    assert await harness.read_lines(2) == [b"-1:protocol\n", b"0\n"]
    assert [type(e) for e in harness.handler.seen] == [BadRequest, ScanPath]


async def test_fatal_bad_request_is_answered_then_closed(harness: Harness) -> None:
    await harness.client.send_all(b"STREAM abc\n/never\n")
    assert await harness.read_lines(2) == [b"-1:protocol\n"]
    await harness.done.wait()
    assert [type(e) for e in harness.handler.seen] == [BadRequest]


async def test_oversized_stream_is_refused_at_once(harness: Harness) -> None:
    await harness.client.send_all(b"STREAM 999999\n")
    lines = await harness.read_lines(1)
    assert lines[0].startswith(b"-1:too-large")
    await harness.done.wait()


async def test_draining_answers_the_request_in_flight_then_closes(
        harness: Harness, autojump_clock: object) -> None:
    harness.handler.delay = 3.0
    await harness.client.send_all(b"/inflight\n")
    await trio.sleep(1.0)
    harness.conn.draining = True
    harness.conn.wake()
    assert await harness.read_lines(1) == [b"0\n"]
    await harness.done.wait()
    assert harness.transport.closed


async def test_back_pressure_stops_reading_ahead(nursery: trio.Nursery,
                                                autojump_clock: object) -> None:
    """Past READ_AHEAD buffered bytes the reader stops reading: a client that pipelines
    without end is held back by its own blocked send, not buffered in the daemon."""
    from scand.fronts.sophie import READ_AHEAD

    client, server = trio.testing.lockstep_stream_pair()  # no buffering in between
    handler = FakeHandler(delay=1000.0)
    conn = ClientConnection(StreamTransport(server), handler)
    nursery.start_soon(conn.run)
    sent = 0
    with trio.move_on_after(50.0):
        await client.send_all(b"/first\n")
        while True:
            await client.send_all(b"/x\n" * 1024)
            sent += 3 * 1024
    assert READ_AHEAD <= conn.proto.buffered <= READ_AHEAD + 3 * 1024
    assert sent <= conn.proto.buffered
    assert len(handler.seen) == 1  # still on the first request
