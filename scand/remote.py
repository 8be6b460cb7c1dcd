"""Remote scanning: the Sophie protocol over TCP, optionally in TLS (trio glue).

Each ``server.tcp`` / ``server.tls`` address gets a listener. A peer outside
``server.tcp_allow`` is closed before a byte is read. Accepted connections are
served by the same :class:`~scand.server.ClientConnection` as Unix clients,
with ``remote=True`` (STREAM and PING/VERSION/STATS only:
:mod:`scand.remote_policy`), and count against the same ``max_connections``
and drain as the Unix listener.

TLS is terminated here and the plaintext handed to the connection through a
socketpair, so the connection code (which reads a real socket, and polls it
to notice a vanished client) is the same for every transport. A TLS peer that
goes away closes the pair, which cancels its scan like a Unix client leaving.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket as stdsocket
import ssl

import structlog
import trio

from scand.config import Config
from scand.events import Reason
from scand.protocol import format_unchecked
from scand.remote_policy import parse_listen, peer_allowed
from scand.server import ClientConnection, Server

log = structlog.get_logger("scand.remote")

# A TLS handshake must be done within this; then the request timeouts apply.
HANDSHAKE_TIMEOUT = 10.0
PUMP_SIZE = 64 * 1024


def tls_context(config: Config) -> ssl.SSLContext:
    """A server context from ``server.tls_cert``/``tls_key``: TLS 1.2 or later."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(config.server.tls_cert, config.server.tls_key)
    return ctx


class RemoteListeners:
    """Every TCP and TLS listener of one daemon, feeding the Unix server's connections."""

    def __init__(self, config: Config, server: Server) -> None:
        self.server = server
        self.service = server.service
        cfg = config.server
        self.allow = [ipaddress.ip_network(n, strict=False) for n in cfg.tcp_allow]
        self.addresses = [(a, False) for a in cfg.tcp] + [(a, True) for a in cfg.tls]
        self.ssl = tls_context(config) if cfg.tls else None
        self.refused = 0  # peers outside the allow-list (busy refusals count on the server)
        self.ports: list[int] = []
        self._accepting = trio.CancelScope()

    async def run(self, *, task_status: trio.TaskStatus[list[int]] = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        """Bind every address, report the bound ports, then accept until stopped."""
        bound: list[tuple[trio.SocketListener, bool]] = []
        for address, tls in self.addresses:
            host, port = parse_listen(address)
            for listener in await trio.open_tcp_listeners(port, host=host):
                bound.append((listener, tls))
                self.ports.append(listener.socket.getsockname()[1])
                log.info("tcp_ready", listen=f"{host}:{self.ports[-1]}", tls=tls)
        task_status.started(self.ports)
        async with trio.open_nursery() as nursery:
            with self._accepting:
                async with trio.open_nursery() as loops:
                    for listener, tls in bound:
                        loops.start_soon(self._accept_loop, listener, tls, nursery)
            for listener, _ in bound:
                await listener.aclose()

    def stop_accepting(self) -> None:
        self._accepting.cancel()

    async def _accept_loop(self, listener: trio.SocketListener, tls: bool,
                           nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                log.warning("tcp_accept_failed", error=exc.strerror)
                await trio.sleep(0.05)
                continue
            try:
                peer = stream.socket.getpeername()
            except OSError:
                await stream.aclose()
                continue
            if not peer_allowed(peer, self.allow):
                self.refused += 1
                log.warning("tcp_refused", peer=str(peer[0]))
                await stream.aclose()  # before reading a byte
                continue
            if len(self.server.connections) >= self.server.max_connections:
                with trio.move_on_after(1.0), contextlib.suppress(trio.BrokenResourceError,
                                                                  trio.ClosedResourceError):
                    if not tls:
                        await stream.send_all(format_unchecked(
                            Reason.BUSY, f"over {self.server.max_connections} connections"))
                self.server.refused += 1
                await stream.aclose()
                continue
            nursery.start_soon(self._serve_tls if tls else self._serve_plain, stream)

    async def _serve_plain(self, stream: trio.SocketStream) -> None:
        conn = ClientConnection(stream.socket, self.service, remote=True)
        await self.server.serve_connection(conn)

    async def _serve_tls(self, stream: trio.SocketStream) -> None:
        assert self.ssl is not None
        tls = trio.SSLStream(stream, self.ssl, server_side=True)
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                await tls.do_handshake()
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
            log.info("tls_handshake_failed")
            await trio.aclose_forcefully(tls)
            return
        inner_raw, outer_raw = stdsocket.socketpair()
        inner_raw.setblocking(False)
        outer = trio.SocketStream(trio.socket.from_stdlib_socket(outer_raw))
        conn = ClientConnection(trio.socket.from_stdlib_socket(inner_raw), self.service,
                                remote=True)
        async with trio.open_nursery() as pumps:
            pumps.start_soon(self._pump_in, tls, outer)
            pumps.start_soon(self._pump_out, outer, tls)
            await self.server.serve_connection(conn)  # closes the inner end when done
            pumps.cancel_scope.cancel()
        await outer.aclose()
        await trio.aclose_forcefully(tls)

    @staticmethod
    async def _pump_in(tls: trio.SSLStream[trio.SocketStream], outer: trio.SocketStream) -> None:
        """Client -> connection. At the client's end, close the pair: like a Unix client
        leaving, which cancels a scan in progress."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await tls.receive_some(PUMP_SIZE):
                await outer.send_all(data)
        with contextlib.suppress(OSError):
            outer.socket.shutdown(stdsocket.SHUT_RDWR)

    @staticmethod
    async def _pump_out(outer: trio.SocketStream, tls: trio.SSLStream[trio.SocketStream]) -> None:
        """Connection -> client: each reply line leaves in one TLS record."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await outer.receive_some(PUMP_SIZE):
                await tls.send_all(data)
            await tls.aclose()
