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

The listener is a front on the shared toolkit (scand.fronts.accept): peers
outside ``farm.agent_allow`` are closed before anything is written, and each
connection gets its line and is closed (nothing is read; HAProxy's
``agent-send`` is not needed).
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
import trio

from scand.config import FarmConfig
from scand.fronts.budget import Held
from scand.fronts.listen import Bound, bind_tcp, parse_allow
from scand.fronts.transport import Transport
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
    down = service.managed.down_reason() if service.managed is not None else ""
    return Snapshot(stopping=stopping or service.draining, reloading=service.reloading,
                    workers=service.config.worker_count, live=len(pool.workers),
                    busy=sum(1 for w in pool.workers if w.busy), queued=pool.waiting,
                    engine_down=down)


class AgentSession:
    """One agent-check connection: the line, then close (nothing is read)."""

    def __init__(self, front: AgentFront, transport: Transport) -> None:
        self.front = front
        self.transport = transport

    async def run(self) -> None:
        line = agent_line(snapshot(self.front.service, self.front.stopping))
        self.front.answered += 1
        with trio.move_on_after(SEND_TIMEOUT):
            await self.transport.send_all(line)

    def fault_reply(self) -> bytes:
        return b""  # no line: HAProxy keeps its last state and asks again

    def drain(self) -> None:
        """One short write: nothing to cut short."""


class AgentFront:
    """The agent-check front, on the shared listener toolkit (allow-list before a
    byte is written, counters, drain). Set :attr:`stopping` to answer ``drain``."""

    name = "agent"
    ready_event = "agent_ready"

    def __init__(self, service: Service) -> None:
        self.service = service
        self.stopping = False
        self.answered = 0

    def open_session(self, transport: Transport, bound: Bound, held: Held) -> AgentSession:
        return AgentSession(self, transport)

    def busy_reply(self, bound: Bound, detail: str) -> bytes:
        return b""

    def closing_reply(self, bound: Bound) -> bytes:
        return b""

    def close(self) -> None:
        """Nothing of its own to clean up."""


def bind_agent(cfg: FarmConfig) -> list[Bound]:
    """``farm.agent``, bound with ``farm.agent_allow`` (before privileges drop)."""
    allow = parse_allow(cfg.agent_allow, "farm.agent_allow")
    return [bind_tcp(cfg.agent, allow, key="farm.agent")]
