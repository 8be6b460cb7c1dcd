"""trio glue for the clamd front: accept loops and one task per connection.

It only moves bytes (and, on the Unix socket, SCM_RIGHTS descriptors) between
the socket and :class:`ClamdConnection`, and hands events to
:class:`ClamdHandler`. Hardening is the Sophie socket's: a connection limit
answered at once, a deadline from the first byte of a request, the stream
limit checked at each chunk header, cancel-on-disconnect. TCP peers outside
the allow-list are closed before a byte is read; TLS listeners refuse plain
clients (the handshake fails).
"""

from __future__ import annotations

import array
import contextlib
import errno
import math
import os
import socket as stdsocket
import ssl

import structlog
import trio

from scand.config import Config
from scand.connection import peer_gone
from scand.events import CLOSED, NEED_DATA
from scand.fronts.clamd_events import (
    NO_FD,
    ClamdEvent,
    EndSession,
    Reply,
    StreamBudget,
    StreamScan,
    Tag,
    frame,
)
from scand.fronts.clamd_handler import ClamdHandler
from scand.fronts.clamd_listen import Listener
from scand.fronts.clamd_proto import ClamdConnection
from scand.fronts.clamd_reply import unchecked_text
from scand.fronts.proxy_gate import ProxyGate
from scand.server import ACCEPT_BACKOFF, FD_RESERVE, FDS_PER_WORKER
from scand.service import Service

# How often a draining front checks whether its last connection has finished.
DRAIN_POLL = 0.05
log = structlog.get_logger("scand.clamd")

RECV_SIZE = 64 * 1024
# Unparsed bytes buffered ahead (pipelined IDSESSION commands). INSTREAM data is
# taken by the parser as it arrives, so this does not bound a stream.
READ_AHEAD = 256 * 1024
HUP_POLL = 0.1
# Descriptors accepted with one recvmsg; more are closed by the kernel (MSG_CTRUNC).
MAX_FDS = 4
FD_SPACE = stdsocket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
TIMED_OUT = b"COMMAND READ TIMED OUT\n"  # clamd's text, always LF


def clamd_connection_budget(config: Config, nofile: int, sophie_connections: int) -> int:
    """Connections the clamd front may hold within RLIMIT_NOFILE, after the Sophie
    socket's share: two descriptors each (the socket and a FILDES descriptor being read)."""
    spare = FD_RESERVE + FDS_PER_WORKER * config.worker_count + sophie_connections
    return max(1, min(config.server.max_connections, (nofile - spare) // 2))


class Transport:
    """A connected client: a trio socket, or a TLS stream over one."""

    def __init__(self, sock: trio.socket.SocketType, tls: trio.SSLStream[trio.SocketStream] | None,
                 unix: bool) -> None:
        self.sock = sock
        self.tls = tls
        self.unix = unix

    async def receive(self) -> tuple[bytes, list[int]]:
        if self.tls is not None:
            try:
                return bytes(await self.tls.receive_some(RECV_SIZE)), []
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b"", []
        if not self.unix:
            return bytes(await self.sock.recv(RECV_SIZE)), []
        data, anc, _flags, _addr = await self.sock.recvmsg(RECV_SIZE, FD_SPACE)
        fds: list[int] = []
        for level, kind, payload in anc:
            if level == stdsocket.SOL_SOCKET and kind == stdsocket.SCM_RIGHTS:
                arr = array.array("i")
                arr.frombytes(payload[: len(payload) - len(payload) % arr.itemsize])
                fds.extend(arr)
        return bytes(data), fds

    async def send(self, data: bytes) -> None:
        """One reply in one send() where the kernel allows (clients read once)."""
        if self.tls is not None:
            await self.tls.send_all(data)
            return
        sent = await self.sock.send(data)
        while sent < len(data):
            sent += await self.sock.send(data[sent:])

    def gone(self) -> bool:
        return peer_gone(self.sock)

    async def aclose(self) -> None:
        if self.tls is not None:
            with trio.move_on_after(1):
                with contextlib.suppress(Exception):
                    await self.tls.aclose()
        self.sock.close()


class ClamdClient:
    """One accepted connection."""

    def __init__(self, transport: Transport, handler: ClamdHandler, service: Service,
                 budget: StreamBudget | None = None) -> None:
        self.t = transport
        self.handler = handler
        self.service = service
        cfg = service.config
        self.proto = ClamdConnection(max_stream=cfg.server.max_stream_bytes,
                                     fd_passing=transport.unix, budget=budget)
        self._wake = trio.Event()
        self._send_lock = trio.Lock()
        self._started = trio.current_time()  # clamd's CommandReadTimeout runs from accept
        self._request_started: float | None = None
        self._pending = 0
        self._scope: trio.CancelScope | None = None
        self.draining = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
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
            await self.t.aclose()

    async def _reader(self, scope: trio.CancelScope) -> None:
        while True:
            if self.proto.buffered >= READ_AHEAD or self.proto.finished:
                # Not reading: still notice a client that vanished, to cancel its scan.
                await trio.sleep(HUP_POLL)
                if not self.t.tls and self.t.gone():
                    scope.cancel()
                    return
                continue
            try:
                data, fds = await self.t.receive()
            except OSError:
                data, fds = b"", []
            if not data and not self.t.tls and self.t.gone():
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
                await limit.acquire()
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
        try:
            return await self.handler.answer(event)
        finally:
            if isinstance(event, StreamScan):
                self.proto.release(len(event.data))

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
                await self.t.send(reply)
            if stuck.cancelled_caught and self._scope is not None:
                log.warning("clamd_send_stalled", front="clamd")
                self._scope.cancel()


class ClamdServer:
    """Accept loops for every clamd listener, plus graceful drain."""

    def __init__(self, service: Service, listeners: list[Listener], max_connections: int,
                 shutdown: object = None) -> None:
        self.service = service
        self.listeners = listeners
        self.max_connections = max_connections
        self.connections: set[ClamdClient] = set()
        self.refused = 0
        self.denied = 0
        self.active = 0
        self.accept_errors = 0
        # Kept open so that, when descriptors run out, one can be freed to accept a
        # client and tell it busy instead of leaving it in the backlog.
        self._reserve: int | None = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._accepting = trio.CancelScope()
        self._shutdown = shutdown
        self.budget = StreamBudget(service.config.clamd_front.stream_memory_mb * 1024 * 1024)
        self._nursery: trio.Nursery | None = None
        tcp_allow = next((lst.allow for lst in listeners if lst.kind == "tcp"), ())
        self.gate = ProxyGate("clamd", tcp_allow, service.config.farm.proxy_from)  # PROXY v2

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            with self._accepting:
                async with trio.open_nursery() as loops:
                    for lst in self.listeners:
                        handler = ClamdHandler(self.service, as_found=lst.as_found,
                                               shutdown=self._shutdown)  # type: ignore[arg-type]
                        loops.start_soon(self._accept_loop, lst, handler, nursery)
                    task_status.started()
            await trio.sleep_forever()

    async def _accept_loop(self, lst: Listener, handler: ClamdHandler,
                           nursery: trio.Nursery) -> None:
        listener = trio.socket.from_stdlib_socket(lst.sock)
        while True:
            try:
                sock, peer = await listener.accept()
            except OSError as exc:
                await self._accept_failed(lst, exc)
                continue
            if not (lst.allowed(peer) or (lst.kind == "tcp" and self.gate.is_balancer(peer))):
                self.denied += 1
                sock.close()  # before reading a byte
                log.warning("clamd_denied", listener=lst.name, peer=str(peer))
                continue
            if self.active >= self.max_connections:
                await self._refuse(sock, lst)
                continue
            self.active += 1  # counted from accept, TLS handshakes included
            nursery.start_soon(self._serve_one, sock, lst, handler)

    async def _accept_failed(self, lst: Listener, exc: OSError) -> None:
        """Out of descriptors: free the reserve one, accept one client and tell it
        busy (a clamd client would otherwise wait in the backlog); never spin."""
        self.accept_errors += 1
        if exc.errno in (errno.EMFILE, errno.ENFILE) and self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
            try:
                raw, _ = lst.sock.accept()  # non-blocking
                with raw, contextlib.suppress(OSError):
                    raw.setblocking(False)
                    if lst.tls is None:
                        raw.send(self._busy_reply(lst))
                    self.refused += 1
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    self._reserve = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        if self.accept_errors % 100 == 1:
            log.warning("accept_failed", front="clamd", error=exc.strerror,
                        count=self.accept_errors)
        await trio.sleep(ACCEPT_BACKOFF)

    @staticmethod
    def _busy_reply(lst: Listener) -> bytes:
        if lst.as_found:
            return b"stream: " + unchecked_text("busy", as_found=True).encode() + b"\0"
        return b"scand: " + unchecked_text("busy", as_found=False).encode() + b"\n"

    async def _refuse(self, sock: trio.socket.SocketType, lst: Listener) -> None:
        self.refused += 1
        log.info("request_rejected", front="clamd", reason="busy",
                 detail=f"over {self.max_connections} connections")
        if lst.tls is None:
            with trio.move_on_after(1.0), contextlib.suppress(OSError):
                await sock.send(self._busy_reply(lst))
        sock.close()

    async def _serve_one(self, sock: trio.socket.SocketType, lst: Listener,
                         handler: ClamdHandler) -> None:
        try:
            await self._serve(sock, lst, handler)
        finally:
            self.active -= 1

    async def _serve(self, sock: trio.socket.SocketType, lst: Listener,
                     handler: ClamdHandler) -> None:
        if lst.kind == "tcp" and await self.gate.resolve(sock) is None:
            sock.close()  # a bad PROXY header, or its real client is not allowed
            return
        tls = None
        if lst.tls is not None:
            tls = trio.SSLStream(trio.SocketStream(sock), lst.tls, server_side=True)
            try:
                with trio.fail_after(self.service.config.server.request_timeout):
                    await tls.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError, OSError) as exc:
                log.warning("clamd_tls_refused", listener=lst.name, error=repr(exc)[:200])
                sock.close()
                return
        client = ClamdClient(Transport(sock, tls, lst.kind == "unix"), handler, self.service,
                             self.budget)
        self.connections.add(client)
        try:
            await client.run()
        finally:
            self.connections.discard(client)

    def stop_accepting(self) -> None:
        self._accepting.cancel()
        for lst in self.listeners:
            lst.sock.close()
            if lst.kind == "unix":
                with contextlib.suppress(OSError):
                    os.unlink(lst.name)

    async def drain(self, grace: float) -> None:
        """Stop accepting; let requests in progress finish within ``grace``; close the rest."""
        self.stop_accepting()
        for conn in list(self.connections):
            conn.draining = True
            conn.wake()
        with trio.move_on_after(grace):
            while self.connections:
                await trio.sleep(DRAIN_POLL)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
