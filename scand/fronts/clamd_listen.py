"""Binding the clamd front's listeners: the Unix socket, TCP addresses, TLS, allow-list.

Everything here happens before the daemon drops privileges and before any
client is accepted. TCP is off unless configured, and a TCP listener always
has an allow-list: clamd itself has none, which has exposed many scanners.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass, field

from scand.config import ClamdFrontConfig, ConfigError
from scand.privileges import Identity
from scand.server import BACKLOG, SocketPathError, _resolve_group, prepare_socket_path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class Listener:
    """One bound, listening socket and how its clients are treated."""

    sock: socket.socket
    kind: str  # "unix" or "tcp"
    name: str  # socket path or host:port, for logs
    as_found: bool = False
    allow: tuple[Network, ...] = ()
    tls: ssl.SSLContext | None = field(default=None, repr=False)

    def allowed(self, peer: object) -> bool:
        """Unix peers are checked by the socket's mode; TCP peers by the allow-list."""
        if self.kind == "unix":
            return True
        try:
            host = peer[0] if isinstance(peer, tuple) else str(peer)
            addr = ipaddress.ip_address(str(host).split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.allow)


def split_host_port(address: str) -> tuple[str, int]:
    """``127.0.0.1:3310`` or ``[::1]:3310`` -> (host, port)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"clamd_front.tcp: not host:port: {address!r}")
    return host, int(port)


def tls_context(cfg: ClamdFrontConfig) -> ssl.SSLContext | None:
    """A server context from tls_cert/tls_key; client certificates required with tls_client_ca."""
    if not cfg.tls_cert:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        if cfg.tls_client_ca:
            ctx.load_verify_locations(cafile=cfg.tls_client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"clamd_front.tls_cert: cannot load: {exc}") from exc
    return ctx


def bind_unix(path: str, mode: int, group: str, owner: Identity | None) -> socket.socket:
    """As the Sophie socket: stale socket replaced, live one refused, mode set before listen."""
    prepare_socket_path(path, "clamd_front.socket", owner)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    old_umask = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    uid = owner.uid if owner else -1
    gid = _resolve_group(group) if group else -1
    if uid != -1 or gid != -1:
        os.chown(path, uid, gid)
    sock.listen(BACKLOG)
    return sock


def bind_tcp(address: str) -> socket.socket:
    host, port = split_host_port(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setblocking(False)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise SocketPathError(f"clamd_front.tcp: cannot listen on {address}: {exc.strerror}"
                              ) from exc
    return sock


def bind_all(cfg: ClamdFrontConfig, owner: Identity | None) -> list[Listener]:
    """Every configured listener, bound; on failure nothing stays bound."""
    listeners: list[Listener] = []
    try:
        if cfg.socket:
            sock = bind_unix(cfg.socket, cfg.socket_mode, cfg.socket_group, owner)
            listeners.append(Listener(sock, "unix", cfg.socket, cfg.unchecked_as_found))
        if cfg.tcp:
            allow = tuple(ipaddress.ip_network(n, strict=False) for n in cfg.tcp_allow)
            tls = tls_context(cfg)
            for address in cfg.tcp:
                listeners.append(Listener(bind_tcp(address), "tcp", address,
                                          cfg.tcp_unchecked_as_found, allow, tls))
    except BaseException:
        close_all(listeners, cfg)
        raise
    return listeners


def close_all(listeners: list[Listener], cfg: ClamdFrontConfig) -> None:
    for lst in listeners:
        lst.sock.close()
        if lst.kind == "unix":
            with contextlib.suppress(OSError):
                os.unlink(lst.name)
