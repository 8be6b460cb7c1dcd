"""One accept loop for every listener, one per-connection wrapper, one drain.

A front (Sophie, clamd, milter, metrics) gives a :class:`Front`: how to open a
session on a transport, and its busy and closing replies. :class:`FrontServer`
does the rest for all of its bound sockets:

* the allow-list is checked before a byte is read (peers outside it are
  closed and counted as ``denied``);
* ``max_connections`` counts from accept, TLS handshakes included, per listener
  (a flood of silent TLS or TCP peers cannot starve the MTA's Unix socket of the
  same front); over it the peer gets the front's busy reply at once;
* a TLS handshake runs under a deadline and holds a fixed estimate of the
  daemon-wide :class:`~scand.fronts.budget.MemoryBudget` while it runs;
* accept errors that mean "out of capacity" (EMFILE, ENFILE, ENOBUFS, ENOMEM)
  free a reserve descriptor to answer one peer busy, then back off; a queued
  peer's own error (ECONNABORTED, EPROTO...) is skipped and any other accept
  error is raised, as ``trio.serve_listeners`` does;
* a fault (any unexpected exception) in a session costs that connection only:
  :func:`serve_guarded` sends the session's unscanned answer, logs one line
  with the traceback, counts it, and closes the transport;
* drain waits on an Event for the last connection within the grace, no polling.
"""

from __future__ import annotations

import contextlib
import errno
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
import trio

from scand.fronts.budget import TLS_HANDSHAKE_BYTES, Held, MemoryBudget
from scand.fronts.listen import Bound
from scand.fronts.proxy_gate import ProxyGate
from scand.fronts.transport import SocketTransport, TlsTransport, Transport
from scand.fronts.unlinker import SocketRemover

log = structlog.get_logger("scand.accept")

# accept() errors that mean "out of capacity": back off and retry.
CAPACITY_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
# accept() errors that belong to one queued peer (Linux passes its pending network
# error up; EPERM from a firewall): skipped, as trio.serve_listeners skips them.
PEER_ERRORS = frozenset({errno.ECONNABORTED, errno.ECONNRESET, errno.EPROTO, errno.EPERM,
                         errno.ENETDOWN, errno.ENETUNREACH, errno.EHOSTDOWN,
                         errno.EHOSTUNREACH, errno.ENONET, errno.ENOPROTOOPT,
                         errno.EOPNOTSUPP, errno.ETIMEDOUT, errno.ENOSR,
                         errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT})
ACCEPT_BACKOFF = 0.05
HANDSHAKE_TIMEOUT = 10.0
# How long a refused or faulted peer's one reply may take to leave.
REPLY_TIMEOUT = 1.0


@dataclass
class Counters:
    """One front's connection counters (read by scand.metrics for every front)."""

    accepted: int = 0
    refused_busy: int = 0  # over max_connections, out of descriptors or memory budget
    denied: int = 0  # outside the allow-list
    faults: int = 0  # sessions ended by an unexpected exception
    handshake_failures: int = 0
    accept_errors: int = 0

    @property
    def refused(self) -> int:
        return self.refused_busy


class Session(Protocol):
    """One connection of one front."""

    async def run(self) -> None:
        """Serve until the peer leaves, the protocol ends or :meth:`drain` takes effect."""

    def fault_reply(self) -> bytes:
        """The front's unscanned answer for the request in progress (b"" = none)."""

    def drain(self) -> None:
        """Stop after the request in progress; an idle connection stops now."""


class Front(Protocol):
    """What a front gives the accept loop."""

    name: str  # "sophie", "clamd", "milter", "metrics": logs and metrics labels
    ready_event: str  # the log line naming each network listener once bound

    def open_session(self, transport: Transport, bound: Bound, held: Held) -> Session: ...

    def busy_reply(self, bound: Bound, detail: str) -> bytes:
        """Sent to a peer refused for capacity (b"" = close only)."""

    def closing_reply(self, bound: Bound) -> bytes:
        """Sent to a peer still in the backlog when the daemon stops (b"" = close only)."""

    def close(self) -> None:
        """The front's own clean-up once its last connection ended (a spool directory)."""


def split_fault(exc: BaseException) -> tuple[BaseException | None, BaseException | None]:
    """(the Exception part, the rest: cancellation, KeyboardInterrupt) of ``exc``."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(Exception)
    if isinstance(exc, Exception):
        return exc, None
    return None, exc


async def serve_guarded(front: str, session: Session, transport: Transport,
                        counters: Counters, where: str = "") -> None:
    """Run ``session``; a fault in it costs this connection only. Closes ``transport``."""
    try:
        await session.run()
    except BaseException as exc:
        fault, rest = split_fault(exc)
        if fault is None:
            raise
        counters.faults += 1
        log.error("connection_fault", front=front, listener=where, exc_info=fault)
        reply = b""
        with contextlib.suppress(Exception):
            reply = session.fault_reply()
        if reply:
            with trio.CancelScope(shield=True), trio.move_on_after(REPLY_TIMEOUT):
                await transport.send_all(reply)
        if rest is not None:
            raise rest from None
    finally:
        with trio.CancelScope(shield=True), contextlib.suppress(Exception):
            await transport.aclose()


class FrontServer:
    """Every listener of one front: accept loops, sessions, counters and drain."""

    def __init__(self, front: Front, bound: list[Bound], *, max_connections: int,
                 budget: MemoryBudget | None = None,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT,
                 remover: SocketRemover | None = None,
                 proxy_from: Sequence[str] = ()) -> None:
        self.front = front
        self.bound = bound
        self.max_connections = max_connections
        self.budget = budget
        self.handshake_timeout = handshake_timeout
        self.remover = remover if remover is not None else SocketRemover()
        self.counters = Counters()
        # PROXY v2 from the configured balancers, on network listeners (docs/FARM.md).
        self._gates = {b.name: ProxyGate(front.name, b.allow or (), proxy_from)
                       for b in bound if b.network and proxy_from}
        self.sessions: set[Session] = set()
        self.active = 0  # accepted and not yet closed, TLS handshakes included
        self.per_listener: dict[str, int] = {b.name: 0 for b in bound}  # the same, each
        self._listeners = [trio.socket.from_stdlib_socket(b.sock) for b in bound]
        self._accepting = trio.CancelScope()
        self._idle = trio.Event()
        self._idle.set()
        self._nursery: trio.Nursery | None = None
        self._stopped = False
        # Kept open so that, when descriptors run out, one can be freed to accept
        # a peer and tell it busy instead of leaving it in the backlog.
        self._reserve: int | None = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    @property
    def ports(self) -> list[int]:
        return [b.port for b in self.bound if b.network]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        for b in self.bound:
            if b.network:
                log.info(self.front.ready_event, front=self.front.name, listen=b.name,
                         tls=b.tls is not None)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                with self._accepting:
                    async with trio.open_nursery() as loops:
                        for b, listener in zip(self.bound, self._listeners, strict=True):
                            loops.start_soon(self._accept_loop, b, listener)
                        task_status.started()
                # accepting stopped: sessions run on in ``nursery`` until they end or drain
        finally:
            self.stop_accepting()
            if self._reserve is not None:
                os.close(self._reserve)
                self._reserve = None
            self.front.close()

    async def _accept_loop(self, bound: Bound, listener: trio.socket.SocketType) -> None:
        while True:
            try:
                sock, peer = await listener.accept()
            except (OSError, trio.ClosedResourceError) as exc:
                if self._stopped:
                    return  # the listener was closed under us: stopping, not a fault
                if not isinstance(exc, OSError):
                    raise
                await self._accept_failed(bound, exc)
                continue
            if not self._admits(bound, peer):
                self.counters.denied += 1
                log.warning("connection_denied", front=self.front.name, listener=bound.name,
                            peer=str(peer[0]) if isinstance(peer, tuple) else str(peer))
                sock.close()  # before reading a byte
                continue
            if self.per_listener[bound.name] >= self.max_connections:
                await self._refuse(sock, bound, f"over {self.max_connections} connections")
                continue
            self.active += 1
            self.per_listener[bound.name] += 1
            if self._idle.is_set():
                self._idle = trio.Event()
            self.counters.accepted += 1
            assert self._nursery is not None
            self._nursery.start_soon(self._serve_one, sock, bound)

    def _admits(self, bound: Bound, peer: object) -> bool:
        """The allow-list (with the PROXY gate's balancers), before a byte is read."""
        gate = self._gates.get(bound.name)
        return gate.admit(peer) if gate is not None else bound.allows(peer)

    async def _refuse(self, sock: trio.socket.SocketType, bound: Bound, detail: str) -> None:
        self.counters.refused_busy += 1
        log.info("request_rejected", front=self.front.name, reason="busy", detail=detail)
        reply = self.front.busy_reply(bound, detail) if bound.tls is None else b""
        if reply:
            with trio.move_on_after(REPLY_TIMEOUT), contextlib.suppress(OSError):
                await sock.send(reply)  # a fresh socket's buffer is empty: no wait
        sock.close()

    async def _accept_failed(self, bound: Bound, exc: OSError) -> None:
        """Out of capacity: free the reserve descriptor, accept one peer, answer it busy,
        back off; never spin. One peer's own error is skipped; any other is raised."""
        if exc.errno in PEER_ERRORS:
            return
        if exc.errno not in CAPACITY_ERRORS:
            raise exc
        self.counters.accept_errors += 1
        if exc.errno in (errno.EMFILE, errno.ENFILE) and self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
            try:
                raw, peer = bound.sock.accept()  # non-blocking
                with raw, contextlib.suppress(OSError):
                    if not self._admits(bound, peer):
                        self.counters.denied += 1  # closed (by ``with``) without a byte
                    else:
                        raw.setblocking(False)
                        reply = self.front.busy_reply(bound, "out of file descriptors")
                        if reply and bound.tls is None:
                            raw.send(reply)
                        self.counters.refused_busy += 1
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    self._reserve = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        if self.counters.accept_errors % 100 == 1:
            log.warning("accept_failed", front=self.front.name, error=exc.strerror,
                        count=self.counters.accept_errors)
        await trio.sleep(ACCEPT_BACKOFF)

    async def _serve_one(self, sock: trio.socket.SocketType, bound: Bound) -> None:
        held = Held(self.budget)
        try:
            try:
                transport = await self._admit(sock, bound, held)
            except Exception:  # a fault before the session: this connection only
                self.counters.faults += 1
                log.exception("connection_fault", front=self.front.name, listener=bound.name)
                sock.close()
                return
            if transport is None:
                return
            try:
                session = self.front.open_session(transport, bound, held)
            except Exception:
                self.counters.faults += 1
                log.exception("connection_fault", front=self.front.name, listener=bound.name)
                with trio.CancelScope(shield=True):
                    await transport.aclose()
                return
            self.sessions.add(session)
            if self._stopped:
                session.drain()
            try:
                await serve_guarded(self.front.name, session, transport, self.counters,
                                    bound.name)
            finally:
                self.sessions.discard(session)
        finally:
            held.release()
            self.active -= 1
            self.per_listener[bound.name] -= 1
            if self.active == 0:
                self._idle.set()

    async def _admit(self, sock: trio.socket.SocketType, bound: Bound,
                     held: Held) -> Transport | None:
        """The PROXY gate, then the transport; None when the connection was closed."""
        gate = self._gates.get(bound.name)
        if gate is not None:
            refused = gate.refused
            client = await gate.resolve(sock)  # before the TLS handshake
            if client is None:
                self.counters.denied += gate.refused - refused
                sock.close()
                return None
        return await self._open(sock, bound, held)

    async def _open(self, sock: trio.socket.SocketType, bound: Bound,
                    held: Held) -> Transport | None:
        """The transport for an accepted socket; for TLS, after the handshake."""
        if bound.tls is None:
            return SocketTransport(sock)
        if not held.take(TLS_HANDSHAKE_BYTES):
            self.counters.refused_busy += 1
            log.info("request_rejected", front=self.front.name, reason="busy",
                     detail="memory budget (TLS handshake)")
            sock.close()
            return None
        tls = trio.SSLStream(trio.SocketStream(sock), bound.tls, server_side=True)
        try:
            with trio.fail_after(self.handshake_timeout):
                await tls.do_handshake()
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError,
                ssl.SSLError, OSError) as exc:
            self.counters.handshake_failures += 1
            log.info("tls_handshake_failed", front=self.front.name, listener=bound.name,
                     error=repr(exc)[:200])
            await trio.aclose_forcefully(tls)
            return None
        finally:
            held.give(TLS_HANDSHAKE_BYTES)
        return TlsTransport(tls)

    def stop_accepting(self) -> None:
        """Close the listeners and remove socket files: new peers are refused by the
        kernel. Peers already queued in the backlog get the front's closing reply."""
        if self._stopped:
            return
        self._stopped = True
        self._accepting.cancel()
        for b, listener in zip(self.bound, self._listeners, strict=True):
            self._answer_backlog(b)
            listener.close()
            if b.kind == "unix":
                self.remover.remove(b.name)

    def _answer_backlog(self, bound: Bound) -> None:
        reply = self.front.closing_reply(bound) if bound.tls is None else b""
        while True:
            try:
                raw, peer = bound.sock.accept()
            except OSError:
                return  # EAGAIN: the backlog is empty (or the socket is closed)
            with raw, contextlib.suppress(OSError):
                raw.setblocking(False)
                if reply and self._admits(bound, peer):
                    with contextlib.suppress(OSError):
                        raw.recv(64 * 1024)  # read what it sent, so closing does not reset it
                    raw.send(reply)
                    log.info("request_rejected", front=self.front.name,
                             reason="shutting-down", detail="backlog")

    async def drain(self, grace: float) -> None:
        """Stop accepting; requests in progress finish within ``grace``; the rest close."""
        self.stop_accepting()
        for session in list(self.sessions):
            session.drain()
        with trio.move_on_after(grace):
            await self._idle.wait()
        if self.active:
            log.warning("drain_timeout", front=self.front.name, connections=self.active)
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

