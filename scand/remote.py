"""Remote scanning: the Sophie protocol over TCP, optionally in TLS (trio glue).

Each ``server.tcp`` / ``server.tls`` address gets a listener. A peer outside
``server.tcp_allow`` is closed before a byte is read. Accepted connections are
served by the same :class:`~scand.server.ClientConnection` as Unix clients,
with ``remote=True`` (STREAM and PING/VERSION/STATS only:
:mod:`scand.remote_policy`), and count against the same ``max_connections``
and drain as the Unix listener.

TLS is terminated here: the connection runs on a :class:`TlsTransport`
(scand.connection's transport interface), so the connection code is the same
for every transport. TLS has no half-close, so a TLS peer that ends its side
is gone, which cancels its scan like a Unix client leaving.
"""

from __future__ import annotations

import contextlib
import ipaddress
import ssl
from collections.abc import Awaitable, Callable

import structlog
import trio

from scand.config import Config
from scand.connection import ClientConnection, SocketTransport, peer_gone
from scand.events import Reason
from scand.fronts.proxy_gate import ProxyGate
from scand.protocol import format_unchecked
from scand.remote_policy import parse_listen
from scand.server import Server

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
        self.gate = ProxyGate("sophie", self.allow, config.farm.proxy_from)  # PROXY v2
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
            if not self.gate.admit(peer):
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
            nursery.start_soon(self._gated, self._serve_tls if tls else self._serve_plain, stream)

    async def _gated(self, serve: Callable[[trio.SocketStream], Awaitable[None]],
                     stream: trio.SocketStream) -> None:
        """The PROXY header (from a balancer) and the real client's allow-list, then serve."""
        if await self.gate.resolve(stream.socket) is None:
            await stream.aclose()
            return
        await serve(stream)

    async def _serve_plain(self, stream: trio.SocketStream) -> None:
        conn = ClientConnection(SocketTransport(stream.socket), self.service, remote=True)
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
        conn = ClientConnection(TlsTransport(tls), self.service, remote=True)
        await self.server.serve_connection(conn)


class TlsTransport:
    """A connection's transport over TLS (see scand.connection.Transport)."""

    def __init__(self, tls: trio.SSLStream[trio.SocketStream]) -> None:
        self.tls = tls
        self.sock = tls.transport_stream.socket
        self._ended = False

    async def receive_some(self, max_bytes: int) -> bytes:
        try:
            data = bytes(await self.tls.receive_some(max_bytes))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        self._ended = not data
        return data

    async def send_all(self, data: bytes) -> None:
        """Each reply line leaves in one TLS record; a peer that left gets nothing."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.tls.send_all(data)

    def peer_gone(self) -> bool:
        return self._ended or peer_gone(self.sock)

    def has_input(self) -> bool:
        return False  # a TLS record may hold a request only once decrypted: not peeked

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.tls)
