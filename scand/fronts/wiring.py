"""Which fronts a config asks for: each one's listeners, bound, and how to make the front.

``cli.serve`` binds every front with :func:`bind_fronts` while still root,
then, once the service runs, makes one :class:`~scand.fronts.accept.FrontServer`
per front from the same list: one loop, not one code path per front.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from scand.config import Config
from scand.farm.agent import AgentFront, bind_agent
from scand.fronts.accept import Front
from scand.fronts.clamd_session import ClamdFront
from scand.fronts.listen import (
    Bound,
    bind_tcp,
    bind_unix,
    close_all,
    parse_allow,
    tls_context,
)
from scand.fronts.sophie import SophieFront
from scand.milter import server as milter
from scand.privileges import Identity
from scand.service import Service

Shutdown = Callable[[], None]


@dataclass
class FrontSpec:
    """One configured front: its bound listeners and how to make it for the service."""

    name: str
    bound: list[Bound]
    make: Callable[[Service, Shutdown], Front]


def bind_sophie(config: Config, owner: Identity | None) -> list[Bound]:
    """The Sophie socket, plus ``server.tcp`` and ``server.tls`` (STREAM only)."""
    cfg = config.server
    bound = [bind_unix(config.socket_path, cfg.socket_mode, cfg.socket_group, owner,
                       key="server.socket_group")]
    try:
        allow = parse_allow(cfg.tcp_allow, "server.tcp_allow")
        for address in cfg.tcp:
            bound.append(bind_tcp(address, allow, key="server.tcp"))
        if cfg.tls:
            ctx = tls_context(cfg.tls_cert, cfg.tls_key, name="server.tls_cert")
            for address in cfg.tls:
                bound.append(bind_tcp(address, allow, ctx, key="server.tls"))
    except BaseException:
        close_all(bound)
        raise
    return bound


def bind_clamd(config: Config, owner: Identity | None) -> list[Bound]:
    """The clamd front's Unix socket and TCP (TLS when a certificate is set) listeners."""
    cfg = config.clamd_front
    bound: list[Bound] = []
    try:
        if cfg.socket:
            b = bind_unix(cfg.socket, cfg.socket_mode, cfg.socket_group, owner,
                          key="clamd_front.socket_group")
            b.as_found = cfg.unchecked_as_found
            bound.append(b)
        if cfg.tcp:
            allow = parse_allow(cfg.tcp_allow, "clamd_front.tcp_allow")
            ctx = (tls_context(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca,
                               name="clamd_front.tls_cert") if cfg.tls_cert else None)
            for address in cfg.tcp:
                bound.append(bind_tcp(address, allow, ctx, key="clamd_front.tcp",
                                      as_found=cfg.tcp_unchecked_as_found))
    except BaseException:
        close_all(bound)
        raise
    return bound


def bind_fronts(config: Config, owner: Identity | None) -> list[FrontSpec]:
    """Every configured front, bound (call before dropping privileges); on failure
    nothing stays bound."""
    specs: list[FrontSpec] = []
    try:
        specs.append(FrontSpec("sophie", bind_sophie(config, owner),
                               lambda service, _stop: SophieFront(service)))
        clamd = bind_clamd(config, owner)
        if clamd:
            specs.append(FrontSpec("clamd", clamd, ClamdFront))
        if milter.enabled(config):
            specs.append(FrontSpec("milter", milter.bind(config, owner),
                                   lambda service, _stop: milter.MilterFront(service)))
        if config.farm.agent:  # HAProxy agent-check (docs/FARM.md)
            specs.append(FrontSpec("agent", bind_agent(config.farm),
                                   lambda service, _stop: AgentFront(service)))
    except BaseException:
        close_fronts(specs)
        raise
    return specs


def close_fronts(specs: list[FrontSpec]) -> None:
    for spec in specs:
        close_all(spec.bound)
