"""What a client over TCP may ask: bytes it sends, never files on the scanning host.

A path request over the network would let any allowed peer probe the
scanning host's filesystem (``-1:not-found`` against ``0`` is an oracle) and
make it read files it names; RELOAD would let it make every worker roll
over. Over TCP, scand answers ``STREAM`` and ``PING``/``VERSION``/``STATS``;
paths and ``RELOAD`` get ``-1:not-allowed``. Pure and stdlib-only; also holds
the address helpers shared by the TCP and the metrics listeners.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from scand.events import BadRequest, Command, Event, Reason, ScanPath

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

REMOTE_COMMANDS = frozenset({"PING", "VERSION", "STATS"})


def remote_filter(event: Event) -> Event:
    """``event`` itself if a remote peer may ask it, else a ``-1:not-allowed`` request."""
    if isinstance(event, ScanPath):
        return BadRequest(Reason.NOT_ALLOWED, "paths are not scanned for TCP clients; use STREAM")
    if isinstance(event, Command) and event.name not in REMOTE_COMMANDS:
        return BadRequest(Reason.NOT_ALLOWED, f"{event.name} is not allowed over TCP")
    return event


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (IPv6 as ``[::1]:9117``) into (host, port)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def peer_allowed(peer: object, allow: Sequence[Network]) -> bool:
    """True if the peer's IP lies in one of the allowed networks."""
    if not isinstance(peer, tuple) or not peer:
        return False
    try:
        addr = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in allow)
