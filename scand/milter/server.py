"""The milter listeners (trio): a Unix socket and/or a TCP port, served by the same Service.

``[milter] socket`` is a Unix socket with its own mode and group (Postfix's
``postfix`` user must reach it; see docs/CLIENTS.md). ``[milter] inet`` is a
TCP port: on a loopback address any local client may connect; on any other
address only the clients listed in ``inet_allow`` (plus loopback) are served,
others are closed at once.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import socket as stdsocket

import structlog
import trio

from scand.config import Config
from scand.milter.message import make_spool_dir
from scand.milter.session import MilterSession
from scand.privileges import Identity
from scand.server import BACKLOG, SocketPathError, prepare_socket_path
from scand.service import Service
from scand.worker.paths import within_roots

log = structlog.get_logger("scand.milter")

DRAIN_POLL = 0.05
ACCEPT_BACKOFF = 0.05
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def enabled(config: Config) -> bool:
    return bool(config.milter.socket or config.milter.inet)


def parse_inet(spec: str) -> tuple[str, int]:
    host, _, port = spec.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def allowed_networks(config: Config) -> list[Network]:
    try:
        return [ipaddress.ip_network(a, strict=False) for a in config.milter.inet_allow]
    except ValueError as exc:
        raise SocketPathError(f"milter.inet_allow: {exc}") from None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _gid(group: str) -> int:
    if not group:
        return -1
    if group.isdigit():
        return int(group)
    import grp

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise SocketPathError(f"milter.socket_group: no such group {group!r}") from None


def bind(config: Config, owner: Identity | None = None) -> list[stdsocket.socket]:
    """Bind every configured milter listener (before privileges are dropped)."""
    cfg = config.milter
    socks: list[stdsocket.socket] = []
    if cfg.socket:
        prepare_socket_path(cfg.socket, "milter.socket", owner)
        sock = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(cfg.socket)
        finally:
            os.umask(old_umask)
        os.chmod(cfg.socket, cfg.socket_mode)
        uid, gid = (owner.uid if owner else -1), _gid(cfg.socket_group)
        if uid != -1 or gid != -1:
            os.chown(cfg.socket, uid, gid)
        socks.append(sock)
    if cfg.inet:
        host, port = parse_inet(cfg.inet)
        if not _is_loopback(host) and not cfg.inet_allow:
            raise SocketPathError(f"milter.inet: {host} is not loopback; list the MTA's "
                              "address in milter.inet_allow")
        allowed_networks(config)
        family = stdsocket.AF_INET6 if ":" in host else stdsocket.AF_INET
        sock = stdsocket.socket(family, stdsocket.SOCK_STREAM)
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        socks.append(sock)
    for sock in socks:
        sock.setblocking(False)
        sock.listen(BACKLOG)
    return socks


class MilterServer:
    """Accept loops for the milter listeners, plus graceful drain."""

    def __init__(self, service: Service, raw: list[stdsocket.socket]) -> None:
        self.service = service
        self.listeners = [trio.socket.from_stdlib_socket(s) for s in raw]
        self.sessions: set[MilterSession] = set()
        self.allow = allowed_networks(service.config)
        self.max_connections = service.config.server.max_connections
        self.spool_dir, self._temporary = make_spool_dir(service.config.milter.spool_dir)
        roots = service.config.server.allowed_roots
        if roots and not within_roots(os.path.realpath(self.spool_dir), roots):
            # Spilled messages are scanned by path: the workers would refuse them.
            if self._temporary:
                shutil.rmtree(self.spool_dir, ignore_errors=True)
            raise SocketPathError(f"milter.spool_dir {self.spool_dir} is outside "
                                  "server.allowed_roots; set it to a directory inside them")
        self._accepting = trio.CancelScope()
        self.refused = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                async with trio.open_nursery() as acceptors:
                    self._accepting = acceptors.cancel_scope
                    for listener in self.listeners:
                        acceptors.start_soon(self._accept_loop, listener)
                    task_status.started()
                await trio.sleep_forever()  # sessions run on until drain() ends them
        finally:
            if self._temporary:
                shutil.rmtree(self.spool_dir, ignore_errors=True)

    async def _accept_loop(self, listener: trio.socket.SocketType) -> None:
        while True:
            try:
                conn, addr = await listener.accept()
            except OSError as exc:
                log.warning("milter_accept_failed", error=exc.strerror)
                await trio.sleep(ACCEPT_BACKOFF)
                continue
            peer = addr[0] if isinstance(addr, tuple) else "unix"
            if not self._permitted(peer) or len(self.sessions) >= self.max_connections:
                self.refused += 1
                log.warning("milter_refused", peer=peer, connections=len(self.sessions))
                conn.close()  # the MTA applies milter_default_action (tempfail)
                continue
            session = MilterSession(conn, self.service, self.spool_dir, peer)
            self._nursery.start_soon(self._serve, session)

    def _permitted(self, peer: str) -> bool:
        if peer == "unix" or _is_loopback(peer):
            return True
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in net for net in self.allow)

    async def _serve(self, session: MilterSession) -> None:
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)

    def stop_accepting(self) -> None:
        self._accepting.cancel()
        for listener in self.listeners:
            listener.close()
        path = self.service.config.milter.socket
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def drain(self, grace: float) -> None:
        """Stop accepting; messages being scanned finish within ``grace``; idle
        connections close (Postfix then applies milter_default_action)."""
        self.stop_accepting()
        for session in list(self.sessions):
            session.stop_when_idle()
        with trio.move_on_after(grace):
            while self.sessions:
                await trio.sleep(DRAIN_POLL)
        self._nursery.cancel_scope.cancel()


__all__ = ["MilterServer", "bind", "enabled"]
