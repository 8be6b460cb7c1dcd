"""One Sophie connection: trio glue between a byte transport and the sans-IO parser.

A reader task keeps feeding the parser (bounded read-ahead) and watches for
the client vanishing; the main task answers requests strictly in order, one
send per reply. A client that closes while its scan runs cancels the scan and
gets nothing written; a client that only half-closes (``shutdown(SHUT_WR)``)
still gets its pending replies.

The connection works on a :class:`Transport`, not a socket: the server gives
it a :class:`SocketTransport`, and tests give it a :class:`StreamTransport`
over ``trio.testing.memory_stream_pair()`` to drive it in-process with a fake
clock.
"""

from __future__ import annotations

import contextlib
import select
from typing import Protocol

import trio

from scand.events import NEED_DATA, BadRequest, Closed, Event, Reason
from scand.protocol import Connection, format_unchecked
from scand.remote_policy import remote_filter

# Pipelined bytes buffered ahead of the request being answered. Past this the
# reader stops reading (back-pressure), except to finish a STREAM body.
READ_AHEAD = 64 * 1024
RECV_SIZE = 64 * 1024
# While the read-ahead is full the socket still holds unread bytes, so it is
# always "readable": a hang-up can only be seen by polling for it, this often.
HUP_POLL = 0.1
# Draining: how long to wait for a request the client sent just before the stop.
DRAIN_READ_WINDOW = 0.05


class Handler(Protocol):
    """What a connection needs from the service."""

    @property
    def max_stream(self) -> int: ...

    @property
    def idle_timeout(self) -> float: ...

    @property
    def request_timeout(self) -> float: ...

    async def handle(self, event: Event) -> bytes: ...


class Transport(Protocol):
    """Bytes in and out, and the two questions a stream cannot answer by itself."""

    async def receive_some(self, max_bytes: int) -> bytes:
        """Bytes, or b"" at end of input (also on a read error)."""

    async def send_all(self, data: bytes) -> None:
        """Send everything; a peer that left is silently ignored."""

    def peer_gone(self) -> bool:
        """True if the peer fully closed (not merely shut down its write side)."""

    def has_input(self) -> bool:
        """True if unread input is waiting right now."""

    async def aclose(self) -> None: ...


def peer_gone(sock: trio.socket.SocketType) -> bool:
    """True if the peer of ``sock`` fully closed; False if it only shut down its
    write side (POLLHUP is only raised for the former)."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLHUP)
    return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0))


class SocketTransport:
    """A connected trio socket."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock

    async def receive_some(self, max_bytes: int) -> bytes:
        try:
            return await self.sock.recv(max_bytes)
        except OSError:
            return b""

    async def send_all(self, data: bytes) -> None:
        """One reply, one send() (PROTOCOL.md §3); the rest only if the kernel split it."""
        try:
            sent = await self.sock.send(data)
            while sent < len(data):
                sent += await self.sock.send(data[sent:])
        except OSError:
            pass  # the client left; it gets nothing, as the protocol says

    def _poll(self, events: int) -> int:
        poller = select.poll()
        poller.register(self.sock.fileno(), events)
        return sum(ev for _, ev in poller.poll(0))

    def peer_gone(self) -> bool:
        return peer_gone(self.sock)

    def has_input(self) -> bool:
        return bool(self._poll(select.POLLIN) & select.POLLIN)

    async def aclose(self) -> None:
        self.sock.close()


class StreamTransport:
    """A trio stream (for in-process tests): the test says when the peer is gone."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.gone = False
        self.closed = False

    async def receive_some(self, max_bytes: int) -> bytes:
        try:
            return bytes(await self.stream.receive_some(max_bytes))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    async def send_all(self, data: bytes) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.send_all(data)

    def peer_gone(self) -> bool:
        return self.gone

    def has_input(self) -> bool:
        return False

    async def aclose(self) -> None:
        self.closed = True
        await self.stream.aclose()


class ClientConnection:
    """One accepted client."""

    def __init__(self, transport: Transport, handler: Handler, *, remote: bool = False) -> None:
        self.transport = transport
        self.handler = handler
        self.remote = remote  # over TCP: STREAM and PING/VERSION/STATS only (scand.remote)
        self.proto = Connection(max_stream=handler.max_stream)
        self._wake = trio.Event()
        self._eof = False
        self._waiting = False  # the main task needs bytes to make progress
        self._request_started: float | None = None
        self.draining = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, nursery.cancel_scope)
                await self._answer_loop()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self.transport.aclose()

    async def _reader(self, scope: trio.CancelScope) -> None:
        while True:
            if self.proto.buffered >= READ_AHEAD and not self._waiting:
                await trio.sleep(HUP_POLL)
                if self.transport.peer_gone():
                    scope.cancel()
                    return
                continue
            data = await self.transport.receive_some(RECV_SIZE)
            if not data:
                if self.transport.peer_gone():
                    scope.cancel()  # gone: cancel the running scan, write nothing
                    return
                self._eof = True
            self.proto.receive_data(data)
            self.wake()
            if not data:
                return

    async def _wait_for_bytes(self) -> bool:
        """Wait for more input; on timeout answer if mid-request. False = close."""
        mid = self.proto.mid_request
        if not mid:
            self._request_started = None
            deadline = trio.current_time() + self.handler.idle_timeout
        else:
            # The request deadline runs from its first byte: a client dribbling
            # one byte a second does not reset it.
            if self._request_started is None:
                self._request_started = trio.current_time()
            deadline = self._request_started + self.handler.request_timeout
        self._waiting = True
        try:
            with trio.move_on_at(deadline):
                await self._wake.wait()
                self._wake = trio.Event()
                return not (self.draining and not self.proto.mid_request)
        finally:
            self._waiting = False
        if mid:
            await self.transport.send_all(
                format_unchecked(Reason.TIMEOUT, "request not completed in time"))
        return False

    async def _answer_loop(self) -> None:
        while True:
            event = self.proto.next_event()
            if event is NEED_DATA:
                if self.draining:
                    if await self._last_bytes():
                        continue  # answer what the client sent just before the stop
                    return
                if not await self._wait_for_bytes():
                    return
                continue
            if isinstance(event, Closed):
                return
            self._request_started = None
            if self.remote:
                event = remote_filter(event)
            reply = await self.handler.handle(event)
            await self.transport.send_all(reply)
            if isinstance(event, BadRequest) and event.fatal:
                return

    async def _last_bytes(self) -> bool:
        """While draining: let the reader take bytes already queued, so a request sent
        just before the stop is answered, not dropped."""
        if self._eof or not self.transport.has_input():
            return False
        with trio.move_on_after(DRAIN_READ_WINDOW):
            await self._wake.wait()
            self._wake = trio.Event()
            return True
        return False
