"""Binding listeners, for every front: Unix sockets, TCP, the allow-list, TLS.

All of it runs before the daemon drops privileges (so a port below 1024 or a
socket in a root-owned directory works with ``server.user``) and before any
client is accepted. One host:port parser, one allow-list, one TLS context
builder, one Unix bind (stale socket replaced, live one refused, mode, owner
and group set before ``listen``). Removing a Unix socket at stop, after
privileges were dropped, is :mod:`scand.fronts.unlinker`'s job.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import ipaddress
import os
import resource
import socket
import ssl
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import structlog

from scand import safedir
from scand.config import Config
from scand.privileges import Identity

log = structlog.get_logger("scand.listen")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
BACKLOG = 4096  # the kernel caps it at net.core.somaxconn
LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"),
                                 ipaddress.ip_network("::1/128"))
# Descriptors kept back from connections: listeners, logs, signal pipe, reserve, spawns.
FD_RESERVE = 32
# Pipes per worker (stdin, stdout) plus one for a replacement being started.
FDS_PER_WORKER = 4


class SocketPathError(RuntimeError):
    """A listener cannot be bound (path in use or not a socket, bad address, bad TLS files)."""


@dataclass
class Bound:
    """One bound, listening socket and how its peers are treated.

    ``allow`` is None for a Unix socket (its mode decides); otherwise the peer's
    address must lie in one of its networks, checked before a byte is read.
    ``as_found`` is the clamd front's per-listener ``unchecked_as_found``.
    """

    sock: socket.socket
    kind: str  # "unix" or "tcp"
    name: str  # socket path or host:port, for logs
    allow: tuple[Network, ...] | None = None
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    as_found: bool = False

    @property
    def network(self) -> bool:
        """True for a TCP/TLS listener: its peers are on the network."""
        return self.kind == "tcp"

    def allows(self, peer: object) -> bool:
        return self.allow is None or peer_allowed(peer, self.allow)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1]) if self.kind == "tcp" else 0


def split_host_port(value: str, key: str = "listen") -> tuple[str, int]:
    """``127.0.0.1:3310`` or ``[::1]:3310`` -> (host, port); a ConfigError-like
    :class:`SocketPathError` naming ``key`` otherwise."""
    host, _, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise SocketPathError(f"{key}: not host:port: {value!r}")
    return host, int(port)


def parse_allow(networks: Iterable[str], key: str = "allow") -> tuple[Network, ...]:
    """CIDR strings into networks (a bare address is a /32 or /128)."""
    try:
        return tuple(ipaddress.ip_network(n, strict=False) for n in networks)
    except ValueError as exc:
        raise SocketPathError(f"{key}: {exc}") from None


def peer_allowed(peer: object, allow: Sequence[Network]) -> bool:
    """True if the peer address (a getpeername() tuple) lies in one of the networks."""
    if not isinstance(peer, tuple) or not peer:
        return False
    try:
        addr = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in allow)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_context(cert: str, key: str, client_ca: str = "", *,
                name: str = "tls_cert") -> ssl.SSLContext:
    """A server context, TLS 1.2 or later; client certificates required with ``client_ca``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
        if client_ca:
            ctx.load_verify_locations(cafile=client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise SocketPathError(f"{name}: cannot load: {exc}") from exc
    return ctx


def resolve_group(group: str, key: str = "socket_group") -> int:
    """A group name or number; -1 for ""."""
    if not group:
        return -1
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise SocketPathError(f"{key}: no such group {group!r}") from None


def prepare_socket_path(path: str, key: str = "server.socket",
                        owner: Identity | None = None) -> None:
    """Make or check the socket's directory (scand.safedir: ours, or refused), then
    remove a stale socket; refuse a live one or anything that is not a socket."""
    safedir.ensure_dir(os.path.dirname(path) or ".", key, mode=0o755,
                       owners=(owner.uid,) if owner else ())
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketPathError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise SocketPathError(f"{path}: cannot probe: {exc.strerror}") from exc
        os.unlink(path)  # stale: nobody is listening
        log.info("stale_socket_removed", path=path)
    else:
        raise SocketPathError(f"{path}: another daemon is listening there")
    finally:
        probe.close()


def bind_unix(path: str, mode: int, group: str = "", owner: Identity | None = None, *,
              key: str = "server.socket_group") -> Bound:
    """Bind ``path``; owner, group and mode are set before ``listen``."""
    prepare_socket_path(path, key.removesuffix("_group"), owner)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        old_umask = os.umask(0o177)  # never wider than asked, even briefly
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, mode)
        uid = owner.uid if owner else -1
        gid = resolve_group(group, key)
        if uid != -1 or gid != -1:
            os.chown(path, uid, gid)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return Bound(sock, "unix", path)


def bind_tcp(address: str, allow: tuple[Network, ...], tls: ssl.SSLContext | None = None, *,
             key: str = "tcp", as_found: bool = False) -> Bound:
    """Bind ``host:port`` (IPv6 as ``[::1]:p``); ``name`` shows the port actually bound."""
    host, port = split_host_port(address, key)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setblocking(False)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise SocketPathError(f"{key}: cannot listen on {address}: {exc.strerror}") from exc
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return Bound(sock, "tcp", f"{shown}:{sock.getsockname()[1]}", allow, tls, as_found)


def close_all(bound: Iterable[Bound]) -> None:
    """Close every socket and remove the Unix socket files (start-up failed)."""
    for b in bound:
        b.sock.close()
        if b.kind == "unix":
            with contextlib.suppress(OSError):
                os.unlink(b.name)


def fd_budget(config: Config) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE as far as allowed; return (limit, usable max_connections).

    Each connection costs one descriptor (two on the clamd front while a FILDES
    descriptor is read); the rest is kept for listeners, worker pipes, log files
    and the reserve descriptor.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    spare = FD_RESERVE + FDS_PER_WORKER * config.worker_count
    return soft, max(1, min(config.server.max_connections, (soft - spare) // 2))
