"""Who is really calling: the PROXY v2 header from a balancer, and the allow-list (trio).

One :class:`ProxyGate` per TCP front (Sophie TCP/TLS, the clamd front's TCP).
Two calls, one at each end of an accept:

* :meth:`ProxyGate.admit` at accept, before a byte is read: the peer is on the
  front's allow-list, or it is a configured balancer (``[farm] proxy_from``).
* :meth:`ProxyGate.resolve` at the start of the connection's own task: the
  address the allow-list was applied to, or None (close the connection).
  From a balancer the header is required (read exactly, under a deadline),
  and the allow-list then applies to the real client it names; a LOCAL header
  (HAProxy's own health checks) is the balancer itself. From anyone else,
  with ``proxy_from`` set, a connection that opens with a PROXY header (v1 or
  v2) is refused, so a client cannot pass itself off as coming through the
  balancer.

Every refusal is logged (``proxy_refused``, with the peer, the claimed client
if any and why) and counted in :attr:`ProxyGate.refused`. With ``proxy_from``
empty both calls are the plain allow-list and read nothing.
"""

from __future__ import annotations

import ipaddress
import socket as stdsocket
from collections.abc import Sequence

import structlog
import trio

from scand.events import NEED_DATA
from scand.fronts import proxyproto
from scand.fronts.listen import Network, peer_allowed
from scand.fronts.proxyproto import FIXED, ProxyError, ProxyHeader

log = structlog.get_logger("scand.proxy")

# The balancer writes the header at once, before any client byte: a balancer
# connection that has not sent it within this is broken (or not a balancer).
HEADER_TIMEOUT = 5.0


async def read_header(sock: trio.socket.SocketType, timeout: float = HEADER_TIMEOUT
                      ) -> ProxyHeader | None:
    """Read exactly one PROXY v2 header from ``sock`` (never a byte of what follows).

    None: the peer closed before sending a byte (a plain connect check). Raises
    ProxyError for a bad header, a peer that closes inside it, or no header in time.
    """
    buf = b""
    with trio.move_on_after(timeout):
        want = FIXED
        while True:
            chunk = await sock.recv(want - len(buf))
            if not chunk:
                if not buf:
                    return None
                raise ProxyError("closed inside the PROXY header")
            buf += chunk
            if len(buf) < FIXED:
                proxyproto.check_signature(buf)  # garbage is refused at its first byte
                continue
            total = proxyproto.header_length(buf)
            assert isinstance(total, int)
            want = total
            if len(buf) == want:
                header = proxyproto.parse(buf)
                assert header is not NEED_DATA and isinstance(header, ProxyHeader)
                return header
    raise ProxyError(f"no PROXY header within {timeout:g}s")


async def peek_first(sock: trio.socket.SocketType, timeout: float) -> bytes:
    """The first bytes the peer sent, left in the socket; b"" if none came in time."""
    with trio.move_on_after(timeout):
        await trio.lowlevel.wait_readable(sock)
        try:
            return await sock.recv(len(proxyproto.SIGNATURE), stdsocket.MSG_PEEK)
        except OSError:
            return b""
    return b""


class ProxyGate:
    """The allow-list of one front, with PROXY v2 from the configured balancers."""

    def __init__(self, front: str, allow: Sequence[Network], proxy_from: Sequence[str],
                 timeout: float = HEADER_TIMEOUT) -> None:
        self.front = front
        self.allow = list(allow)
        self.balancers = [ipaddress.ip_network(n, strict=False) for n in proxy_from]
        self.timeout = timeout
        self.refused = 0  # connections closed for a PROXY reason or a real client not allowed

    def is_balancer(self, peer: object) -> bool:
        return bool(self.balancers) and peer_allowed(peer, self.balancers)

    def admit(self, peer: object) -> bool:
        """At accept: may this peer talk to us at all (before a byte is read)?"""
        return self.is_balancer(peer) or peer_allowed(peer, self.allow)

    async def resolve(self, sock: trio.socket.SocketType) -> object | None:
        """The client this connection serves (the balancer's real client, or the
        peer itself), or None after logging why it must be closed."""
        try:
            peer: object = sock.getpeername()
        except OSError:
            return None  # gone already
        if not self.balancers:
            return peer
        if not self.is_balancer(peer):
            if proxyproto.looks_like_proxy(await peek_first(sock, self.timeout)):
                return self._refuse(peer, None, "PROXY header from a peer not in proxy_from")
            return peer
        try:
            header = await read_header(sock, self.timeout)
        except (ProxyError, OSError) as exc:
            return self._refuse(peer, None, str(exc))
        if header is None:
            return None  # connected and closed, nothing to refuse
        if header.command == "LOCAL":
            return peer  # the balancer's own connection (health checks)
        if header.source is None:
            return self._refuse(peer, None, f"no client address ({header.family})")
        if not peer_allowed(header.source, self.allow):
            return self._refuse(peer, header.source, "client not in the allow-list")
        return header.source

    def _refuse(self, peer: object, client: object, why: str) -> object | None:
        self.refused += 1
        log.warning("proxy_refused", front=self.front, peer=_host(peer),
                    client=_host(client) if client else None, reason=why)
        return None


def _host(peer: object) -> str:
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


__all__ = ["HEADER_TIMEOUT", "ProxyGate", "peek_first", "read_header"]
