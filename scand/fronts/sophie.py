"""The Sophie front: one connection's trio glue between a transport and the sans-IO parser.

A reader task keeps feeding the parser (bounded read-ahead) and watches for
the client vanishing; the main task answers requests strictly in order, one
send per reply. A client that closes while its scan runs cancels the scan and
gets nothing written; a client that only half-closes (``shutdown(SHUT_WR)``)
still gets its pending replies.

The connection works on a :class:`~scand.fronts.transport.Transport`, not a
socket: the accept loop (:mod:`scand.fronts.accept`) gives it a socket or TLS
transport, and tests give it a ``StreamTransport`` over
``trio.testing.memory_stream_pair()`` to drive it in-process with a fake clock.
Over TCP/TLS it answers STREAM and PING/VERSION/STATS only
(:mod:`scand.fronts.network`). :class:`SophieFront` is what the accept loop
needs: sessions, ``-1:busy``, ``-1:shutting-down`` and, after a fault,
``-1:internal``.
"""

from __future__ import annotations

from typing import Protocol

import trio

from scand.events import NEED_DATA, BadRequest, Closed, Event, Reason, ScanPath, ScanStream
from scand.fronts import hangup, timers
from scand.fronts.budget import Held
from scand.fronts.listen import Bound
from scand.fronts.network import network_filter
from scand.fronts.transport import RECV_SIZE, SocketTransport, Transport
from scand.protocol import Connection, format_unchecked

# Pipelined bytes buffered ahead of the request being answered. Past this the
# reader stops reading (back-pressure), except to finish a STREAM body.
READ_AHEAD = 64 * 1024
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


class ClientConnection:
    """One accepted client."""

    def __init__(self, transport: Transport, handler: Handler, *, remote: bool = False,
                 held: Held | None = None) -> None:
        self.transport = transport
        self.handler = handler
        self.remote = remote  # over TCP: STREAM and PING/VERSION/STATS only
        self.held = held if held is not None else Held(None)
        self.proto = Connection(max_stream=handler.max_stream, budget=self.held)
        self._wake = trio.Event()
        self._eof = False
        self._waiting = False  # the main task needs bytes to make progress
        self._request_started: float | None = None
        # One cancel scope for the connection's life, cancelled by the daemon's deadline
        # watch (scand.fronts.timers) if the main task waits for bytes past its idle or
        # request deadline; the deadline is a float on ``_clock``, armed only while it
        # waits: far cheaper than a new scope, or a moved deadline, per request.
        self._timer = trio.CancelScope()
        self._clock = timers.current().add(self._timer)
        self._timeout_mid = False  # the armed deadline was a request's, not idleness
        # On a plain socket the main task reads by itself and a hang-up during a scan
        # is seen by the daemon's one hangup.HangupWatch, which cancels ``_gone``: no
        # reader task, so no wake-up of a second task per request. The socket joins
        # the watch at its first scan and leaves it when the connection ends. Other transports
        # (TLS, the tests' memory streams) keep the reader task.
        self._sock = transport.sock if isinstance(transport, SocketTransport) else None
        self._direct = self._sock is not None
        self._gone = trio.CancelScope()
        self._hangup: hangup.Watched | None = None  # in the watch from the first scan on
        self._hangup_fd = -1
        self._reading = False  # direct: the main task waits in a read
        self.draining = False

    def wake(self) -> None:
        self._wake.set()

    def drain(self) -> None:
        self.draining = True
        if not self._direct:
            self.wake()
        elif self._reading and not self.proto.mid_request:
            self._timer.cancel()  # idle: close now (mid-request: let it finish)

    def fault_reply(self) -> bytes:
        return format_unchecked(Reason.INTERNAL, "fault in the daemon")

    async def run(self) -> None:
        """Serve until done; closing the transport is the caller's (accept.serve_guarded)."""
        try:
            if self._direct:
                with self._gone:  # cancelled by the hangup watch: write nothing more
                    await self._serve()
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, nursery.cancel_scope)
                await self._serve()
                nursery.cancel_scope.cancel()
        finally:
            self._clock.disarm()
            timers.current().discard(self._clock)
            if self._hangup_fd >= 0:  # before the socket is closed (serve_guarded)
                hangup.current().discard(self._hangup_fd)

    async def _serve(self) -> None:
        with self._timer:
            await self._answer_loop()
        if self._timer.cancel_called and self._timeout_mid:
            await self.transport.send_all(
                format_unchecked(Reason.TIMEOUT, "request not completed in time"))

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
        """Wait for more input. False = close. Past the deadline the timer scope ends
        the answer loop; ``run`` then answers ``-1:timeout`` if mid-request."""
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
        self._timeout_mid = mid
        self._clock.arm(deadline)
        if self._direct:
            self._reading = True
            try:
                data = await self.transport.receive_some(RECV_SIZE)
            finally:
                self._reading = False
                self._clock.disarm()
            if not self._take(data):
                return False
        else:
            self._waiting = True
            try:
                await self._wake.wait()
            finally:
                self._waiting = False
                self._clock.disarm()
            self._wake = trio.Event()
        if self._timer.cancel_called:
            # The deadline passed in the same scheduler pass as the wake-up: it
            # counts as passed (a wait on its own scope would have said the same a
            # moment later), and nothing more may run under the cancelled timer.
            return False
        return not (self.draining and not self.proto.mid_request)

    async def _answer_loop(self) -> None:
        answered = False  # a reply was sent since the last wait for bytes
        while True:
            event = self.proto.next_event()
            if event is NEED_DATA:
                answered = False
                if self.draining:
                    if await self._last_bytes():
                        continue  # answer what the client sent just before the stop
                    return
                if not await self._wait_for_bytes():
                    return
                continue
            if isinstance(event, Closed):
                return
            if answered:
                # Pipelined requests: replies leave without a scheduler pass
                # (transport.send_all), so let other connections run between them.
                await trio.lowlevel.checkpoint()
            self._request_started = None
            if self.remote:
                event = network_filter(event)
            watched = None
            if self._sock is not None and isinstance(event, ScanPath | ScanStream):
                watched = self._hangup
                if watched is None and self._hangup_fd < 0:  # the first scan: join the watch
                    self._hangup_fd = self._sock.fileno()
                    watched = self._hangup = hangup.current().add(self._hangup_fd, self._gone)
                if watched is not None:
                    watched.start()
            try:
                reply = await self.handler.handle(event)
            finally:
                if watched is not None:
                    watched.stop()
                if isinstance(event, ScanStream):
                    self.held.give(len(event.data))
            await self.transport.send_all(reply)
            answered = True
            if isinstance(event, BadRequest) and event.fatal:
                return

    def _take(self, data: bytes) -> bool:
        """Direct reads: feed the parser; False if the peer is gone (write nothing)."""
        if not data:
            if self.transport.peer_gone():
                return False
            self._eof = True
        self.proto.receive_data(data)
        return True

    async def _last_bytes(self) -> bool:
        """While draining: let the reader take bytes already queued, so a request sent
        just before the stop is answered, not dropped."""
        if self._eof or not self.transport.has_input():
            return False
        if self._direct:
            with trio.move_on_after(DRAIN_READ_WINDOW):
                return self._take(await self.transport.receive_some(RECV_SIZE))
            return False
        with trio.move_on_after(DRAIN_READ_WINDOW):
            await self._wake.wait()
            self._wake = trio.Event()
            return True
        return False


class SophieFront:
    """The Sophie protocol's part in the accept loop (scand.fronts.accept.Front)."""

    name = "sophie"
    ready_event = "tcp_ready"

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def open_session(self, transport: Transport, bound: Bound, held: Held) -> ClientConnection:
        return ClientConnection(transport, self.handler, remote=bound.network, held=held)

    def busy_reply(self, bound: Bound, detail: str) -> bytes:
        return format_unchecked(Reason.BUSY, detail)

    def closing_reply(self, bound: Bound) -> bytes:
        return format_unchecked(Reason.SHUTTING_DOWN)

    def close(self) -> None:
        pass
