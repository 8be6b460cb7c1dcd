"""The milter front's listeners and its part in the accept loop.

``[milter] socket`` is a Unix socket with its own mode and group (Postfix's
``postfix`` user must reach it; see docs/CLIENTS.md). ``[milter] inet`` is a
TCP port: on a loopback address any local client may connect; on any other
address only the clients listed in ``inet_allow`` (plus loopback) are served,
others are closed before a byte is read. Accepting, limits, faults and drain
are :mod:`scand.fronts.accept`'s; a refused MTA applies its
``milter_default_action`` (tempfail).
"""

from __future__ import annotations

import os
import shutil

import structlog

from scand.config import Config
from scand.fronts.budget import Held
from scand.fronts.listen import (
    LOOPBACK,
    Bound,
    SocketPathError,
    bind_tcp,
    bind_unix,
    close_all,
    is_loopback,
    parse_allow,
    split_host_port,
)
from scand.fronts.transport import Transport
from scand.milter.message import make_spool_dir
from scand.milter.session import MilterSession
from scand.privileges import Identity
from scand.service import Service
from scand.worker.paths import within_roots

log = structlog.get_logger("scand.milter")


def enabled(config: Config) -> bool:
    return bool(config.milter.socket or config.milter.inet)


def bind(config: Config, owner: Identity | None = None) -> list[Bound]:
    """Bind every configured milter listener (before privileges are dropped)."""
    cfg = config.milter
    bound: list[Bound] = []
    try:
        if cfg.socket:
            bound.append(bind_unix(cfg.socket, cfg.socket_mode, cfg.socket_group, owner,
                                   key="milter.socket_group"))
        if cfg.inet:
            host, _ = split_host_port(cfg.inet, "milter.inet")
            if not is_loopback(host) and not cfg.inet_allow:
                raise SocketPathError(f"milter.inet: {host} is not loopback; list the MTA's "
                                      "address in milter.inet_allow")
            allow = LOOPBACK + parse_allow(cfg.inet_allow, "milter.inet_allow")
            bound.append(bind_tcp(cfg.inet, allow, key="milter.inet"))
    except BaseException:
        close_all(bound)
        raise
    return bound


class MilterFront:
    """The milter protocol's part in the accept loop (scand.fronts.accept.Front)."""

    name = "milter"
    ready_event = "milter_tcp_ready"

    def __init__(self, service: Service) -> None:
        self.service = service
        self.spool_dir, self._temporary = make_spool_dir(service.config.milter.spool_dir)
        roots = service.config.server.allowed_roots
        if roots and not within_roots(os.path.realpath(self.spool_dir), roots):
            # Spilled messages are scanned by path: the workers would refuse them.
            self.close()
            raise SocketPathError(f"milter.spool_dir {self.spool_dir} is outside "
                                  "server.allowed_roots; set it to a directory inside them")

    def open_session(self, transport: Transport, bound: Bound, held: Held) -> MilterSession:
        return MilterSession(transport, self.service, self.spool_dir, transport.peer, held)

    def busy_reply(self, bound: Bound, detail: str) -> bytes:
        return b""  # closed: the MTA applies milter_default_action (tempfail)

    def closing_reply(self, bound: Bound) -> bytes:
        return b""

    def close(self) -> None:
        """Remove the private spool directory (the daemon stops)."""
        if self._temporary:
            shutil.rmtree(self.spool_dir, ignore_errors=True)
            self._temporary = False


__all__ = ["MilterFront", "bind", "enabled"]
