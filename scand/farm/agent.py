"""HAProxy's agent-check: scand tells the balancer how much to send it.

HAProxy connects to ``[farm] agent`` every ``agent-inter``, reads one line
and closes. The line (:func:`agent_line`, pure) is:

* ``drain`` while scand is stopping (from SIGTERM: ``farm.drain_delay``
  first, then the drain of its connections) or reloading: weight 0, no new
  connection, the ones open finish;
* ``down#<why>`` when it cannot scan: no live worker, or its managed clamd
  is down (HAProxy then routes around it; the next ``up`` brings it back);
* else ``up ready <n>%``, ``n`` = 100 / (1 + (busy + queued) / workers):
  100 when idle, 50 with every worker busy, 33 with as many requests queued
  as there are workers, never below 1. ``up`` and ``ready`` undo an earlier
  ``down`` or ``drain`` (only the agent can, HAProxy's manual says).

HAProxy scales the configured ``weight`` by the percentage, so the server
lines need a weight that keeps the steps (``weight 100``).

The listener is minimal on purpose: peers outside ``farm.agent_allow`` are
closed before anything is written, and each connection gets its line and is
closed (nothing is read; HAProxy's ``agent-send`` is not needed). It has its
own accept loop for now; it should move onto the shared listener toolkit.
"""

from __future__ import annotations

import contextlib
import ipaddress
from dataclasses import dataclass

import structlog
import trio

from scand.config import FarmConfig
from scand.remote_policy import parse_listen, peer_allowed
from scand.service import Service

log = structlog.get_logger("scand.agent")

MIN_WEIGHT = 1  # percent: a loaded host still gets some traffic (0 would mean drain)
# A peer that does not take its line within this is dropped (the line fits any
# socket buffer, so this only bounds a stuck close).
SEND_TIMEOUT = 2.0


@dataclass(frozen=True)
class Snapshot:
    """What the agent's answer depends on, read from the service and pool."""

    stopping: bool = False
    reloading: bool = False
    workers: int = 1  # configured pool size
    live: int = 1  # workers alive now
    busy: int = 0
    queued: int = 0
    engine_down: str = ""  # why the engine cannot scan; "" = it can


def agent_line(s: Snapshot) -> bytes:
    """The agent-check answer for one snapshot (one ASCII line, LF-terminated)."""
    if s.stopping or s.reloading:
        return b"drain\n"
    if s.engine_down:
        return b"down#" + s.engine_down.encode("ascii", "replace") + b"\n"
    if s.live <= 0:
        return b"down#no worker\n"
    return b"up ready %d%%\n" % weight(s)


def weight(s: Snapshot) -> int:
    """Percent of the configured weight: falls as workers fill and the queue grows."""
    load = (s.busy + s.queued) / max(1, s.workers)
    return max(MIN_WEIGHT, min(100, round(100 / (1 + load))))


def snapshot(service: Service, stopping: bool = False) -> Snapshot:
    """The service's state as the agent needs it (read at each agent connection)."""
    pool = service.pool
    managed = service.managed
    down = ""
    if managed is not None and (managed.current is None
                                or managed.current.proc.returncode is not None):
        down = "clamd down"
    return Snapshot(stopping=stopping or service.draining, reloading=service.reloading,
                    workers=service.config.worker_count, live=len(pool.workers),
                    busy=sum(1 for w in pool.workers if w.busy), queued=pool.waiting,
                    engine_down=down)


class Agent:
    """The agent-check listener of one daemon. Set :attr:`stopping` to answer ``drain``."""

    def __init__(self, cfg: FarmConfig, service: Service) -> None:
        self.listen = cfg.agent
        self.allow = [ipaddress.ip_network(n, strict=False) for n in cfg.agent_allow]
        self.service = service
        self.stopping = False
        self.answered = 0
        self.refused = 0
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        host, port = parse_listen(self.listen)
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        log.info("agent_ready", listen=f"{host}:{self.port}")
        task_status.started(self.port)
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener)

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # out of descriptors: HAProxy retries next inter
                    log.warning("agent_accept_failed", error=exc.strerror)
                    await trio.sleep(0.05)
                    continue
                await self._answer(stream)  # no read, one short write: inline

    async def _answer(self, stream: trio.SocketStream) -> None:
        try:
            peer = stream.socket.getpeername()
        except OSError:
            peer = None
        if not peer_allowed(peer, self.allow):
            self.refused += 1
            log.warning("agent_refused", peer=str(peer[0]) if peer else None)
            await trio.aclose_forcefully(stream)
            return
        line = agent_line(snapshot(self.service, self.stopping))
        self.answered += 1
        with trio.move_on_after(SEND_TIMEOUT), contextlib.suppress(
                trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(line)
        await trio.aclose_forcefully(stream)
