"""The clamd front's session (trio glue) and its part in the accept loop.

It only moves bytes (and, on the Unix socket, SCM_RIGHTS descriptors) between
the transport and :class:`ClamdConnection`, and hands events to
:class:`ClamdHandler`. Hardening is the Sophie socket's: a deadline from the
first byte of a request, the stream limit checked at each chunk header, the
daemon-wide memory budget charged per chunk, cancel-on-disconnect. Listeners,
allow-list, TLS, connection limits and drain are :mod:`scand.fronts.accept`'s.
Over TCP/TLS only INSTREAM and the harmless commands are answered unless
``clamd_front.tcp_allow_paths`` is set (:mod:`scand.fronts.network`).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable

import structlog
import trio

from scand.events import CLOSED, NEED_DATA
from scand.fronts.budget import Held
from scand.fronts.clamd_events import (
    NO_FD,
    ClamdEvent,
    EndSession,
    FdScan,
    PathScan,
    Reply,
    Simple,
    StreamScan,
    Tag,
    frame,
)
from scand.fronts.clamd_handler import ClamdHandler
from scand.fronts.clamd_proto import ClamdConnection
from scand.fronts.clamd_reply import unchecked_text
from scand.fronts.listen import Bound
from scand.fronts.network import network_may
from scand.fronts.transport import RECV_SIZE, Transport
from scand.service import Service

log = structlog.get_logger("scand.clamd")

# Unparsed bytes buffered ahead (pipelined IDSESSION commands). INSTREAM data is
# taken by the parser as it arrives, so this does not bound a stream.
READ_AHEAD = 256 * 1024
HUP_POLL = 0.1
TIMED_OUT = b"COMMAND READ TIMED OUT\n"  # clamd's text, always LF
NOT_ALLOWED = "{} command not allowed over TCP. ERROR"


class ClamdClient:
    """One accepted connection."""

    def __init__(self, transport: Transport, handler: ClamdHandler, service: Service,
                 held: Held | None = None, *, network: bool = False) -> None:
        self.t = transport
        self.handler = handler
        self.service = service
        cfg = service.config
        self.held = held if held is not None else Held(None)
        self.network = network  # over TCP/TLS: scand.fronts.network's rule
        self.allow_paths = cfg.clamd_front.tcp_allow_paths
        self.proto = ClamdConnection(max_stream=cfg.server.max_stream_bytes,
                                     fd_passing=transport.fd_passing, budget=self.held)
        self._current: ClamdEvent | None = None  # the request being answered, for a fault
        self._wake = trio.Event()
        self._send_lock = trio.Lock()
        self._started = trio.current_time()  # clamd's CommandReadTimeout runs from accept
        self._request_started: float | None = None
        self._pending = 0
        self._scope: trio.CancelScope | None = None
        self.draining = False

    def wake(self) -> None:
        self._wake.set()

    def drain(self) -> None:
        self.draining = True
        self.wake()

    def fault_reply(self) -> bytes:
        """``<what>: internal ERROR`` for the request in progress (clamd's ERROR form)."""
        event = self._current
        tag = getattr(event, "tag", Tag())
        what = "scand"
        if isinstance(event, PathScan):
            what = event.path
        elif isinstance(event, StreamScan) or self.proto.waiting_for[0] == "stream":
            what = "stream"
        elif isinstance(event, FdScan):
            what = f"fd[{event.fd}]"
        return frame(tag, f"{what}: " + unchecked_text("internal",
                                                        as_found=self.handler.as_found))

    async def run(self) -> None:
        """Serve until done; closing the transport is the caller's (accept.serve_guarded)."""
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                nursery.start_soon(self._reader, nursery.cancel_scope)
                await self._main()
                nursery.cancel_scope.cancel()
        finally:
            for fd in self.proto.take_fds():
                with contextlib.suppress(OSError):
                    os.close(fd)
            self.proto.release(self.proto.held)

    async def _reader(self, scope: trio.CancelScope) -> None:
        while True:
            if self.proto.buffered >= READ_AHEAD or self.proto.finished:
                # Not reading: still notice a client that vanished, to cancel its scan.
                await trio.sleep(HUP_POLL)
                if not self.t.secure and self.t.peer_gone():
                    scope.cancel()
                    return
                continue
            data, fds = await self.t.receive_fds(RECV_SIZE)
            if not data and not self.t.secure and self.t.peer_gone():
                for fd in fds:
                    os.close(fd)
                scope.cancel()  # gone: cancel what runs, write nothing
                return
            self.proto.receive_data(data, fds)
            self.wake()
            if not data:
                return

    async def _wait(self) -> bool:
        """Wait for input. False: the deadline passed (the timeout reply was sent)."""
        cfg = self.service.config.server
        if self.proto.mid_request:
            if self._request_started is None:
                self._request_started = trio.current_time()
            deadline = self._request_started + cfg.request_timeout
        elif self.proto.in_session:
            deadline = trio.current_time() + cfg.idle_timeout if not self._pending else math.inf
        else:
            deadline = self._started + cfg.request_timeout
        with trio.move_on_at(deadline):
            await self._wake.wait()
            self._wake = trio.Event()
            return True
        await self._timed_out()
        return False

    async def _timed_out(self) -> None:
        what, tag = self.proto.waiting_for
        log.info("request_rejected", front="clamd", reason="timeout", detail=what)
        if what == "stream" and tag is not None:
            await self._send(frame(tag, "stream: " + unchecked_text(
                "timeout", as_found=self.handler.as_found)))
        elif what == "fildes" and tag is not None:
            await self._send(frame(tag, NO_FD))
        elif not self.proto.in_session:
            await self._send(TIMED_OUT)

    async def _main(self) -> None:
        limit = trio.Semaphore(self.service.config.clamd_front.session_requests)
        async with trio.open_nursery() as session:
            while True:
                event = self.proto.next_event()
                if event is NEED_DATA:
                    if self.draining and not self.proto.mid_request:
                        return
                    if not await self._wait():
                        return
                    continue
                if event is CLOSED or isinstance(event, EndSession):
                    return  # the nursery waits for the session's pending replies
                self._request_started = None
                tag = getattr(event, "tag", Tag())
                if tag.id is None:
                    await self._send(await self._answer(event))
                    return
                try:
                    await limit.acquire()
                except BaseException:
                    _drop(event)  # never answered: its descriptor is ours to close
                    raise
                self._pending += 1
                session.start_soon(self._session_request, event, limit)
                if isinstance(event, Reply) and event.close:
                    return

    async def _session_request(self, event: object, limit: trio.Semaphore) -> None:
        try:
            await self._send(await self._answer(event))  # type: ignore[arg-type]
        finally:
            self._pending -= 1
            limit.release()
            self.wake()

    async def _answer(self, event: ClamdEvent) -> bytes:
        self._current = event
        try:
            refused = self._network_refusal(event)
            if refused is not None:
                return refused
            return await self.handler.answer(event, self.held)
        finally:
            if isinstance(event, StreamScan):
                self.proto.release(len(event.data))

    def _network_refusal(self, event: ClamdEvent) -> bytes | None:
        """Over TCP: one refusal per command, the same whatever the path named."""
        if not self.network:
            return None
        if isinstance(event, (PathScan, FdScan)):
            command = event.command if isinstance(event, PathScan) else "FILDES"
            if network_may(command, is_path=True, allow_paths=self.allow_paths):
                return None
        elif isinstance(event, Simple):
            command = event.name
            if network_may(command, is_path=False):
                return None
        else:
            return None
        log.info("request_rejected", front="clamd", reason="not-allowed", detail=command)
        return frame(event.tag, NOT_ALLOWED.format(command))

    async def _send(self, reply: bytes) -> None:
        if not reply:
            return
        async with self._send_lock:
            # A client that left gets nothing. One that stops reading while its
            # replies pile up (a deadlocked IDSESSION) is cut off, as clamd does
            # after SendBufTimeout, here after the request deadline.
            with trio.move_on_after(self.service.config.server.request_timeout) as stuck, \
                    contextlib.suppress(OSError, trio.BrokenResourceError,
                                        trio.ClosedResourceError):
                await self.t.send_all(reply)
            if stuck.cancelled_caught and self._scope is not None:
                log.warning("clamd_send_stalled", front="clamd")
                self._scope.cancel()


def _drop(event: object) -> None:
    """Close the descriptor of a FILDES that will not be answered."""
    if isinstance(event, FdScan):
        with contextlib.suppress(OSError):
            os.close(event.fd)


class ClamdFront:
    """The clamd protocol's part in the accept loop (scand.fronts.accept.Front)."""

    name = "clamd"
    ready_event = "clamd_tcp_ready"

    def __init__(self, service: Service, shutdown: Callable[[], None] | None = None) -> None:
        self.service = service
        self._handlers = {as_found: ClamdHandler(service, as_found=as_found, shutdown=shutdown)
                          for as_found in (False, True)}

    def open_session(self, transport: Transport, bound: Bound, held: Held) -> ClamdClient:
        return ClamdClient(transport, self._handlers[bound.as_found], self.service, held,
                           network=bound.network)

    def busy_reply(self, bound: Bound, detail: str) -> bytes:
        if bound.as_found:
            return b"stream: " + unchecked_text("busy", as_found=True).encode() + b"\0"
        return b"scand: " + unchecked_text("busy", as_found=False).encode() + b"\n"

    def closing_reply(self, bound: Bound) -> bytes:
        return b""

    def close(self) -> None:
        pass
