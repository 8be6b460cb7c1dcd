"""Drive any front in-process: its session on a memory stream, under the toolkit's
per-connection wrapper (scand.fronts.accept.serve_guarded), with the real service,
pool and fake workers (tests/inproc/fakes.py) and trio's autojump clock."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
import trio.testing

from scand import config as configmod
from scand.config import Config
from scand.fronts.accept import Counters, Front, serve_guarded
from scand.fronts.budget import Held, MemoryBudget
from scand.fronts.listen import Bound
from scand.fronts.transport import StreamTransport
from scand.pool.pool import Pool
from scand.service import Service
from tests.inproc.fakes import FakeSpawner


async def make_service(nursery: trio.Nursery, config: Config | None = None,
                       **pool: Any) -> Service:
    cfg = configmod.override(config or Config(), "pool", **{"workers": 2, **pool})
    p = Pool(cfg, FakeSpawner(nursery))
    await nursery.start(p.run)
    service = Service(cfg, p, lambda: cfg)
    await nursery.start(service.run)
    return service


def bound(kind: str = "unix", *, as_found: bool = False) -> Bound:
    """A Bound for a session's options (its socket is never used in-process)."""
    family = socket.AF_UNIX if kind == "unix" else socket.AF_INET
    return Bound(socket.socket(family, socket.SOCK_STREAM), kind, f"test-{kind}", None,
                 None, as_found)


@dataclass
class Conn:
    """One in-process connection: the test holds ``client``."""

    client: trio.abc.Stream
    transport: StreamTransport
    held: Held
    counters: Counters
    done: trio.Event

    async def send(self, data: bytes) -> None:
        """Send; a front that already closed the connection is not an error here."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.client.send_all(data)

    async def read_until(self, pred: Callable[[bytes], bool], limit: float = 60.0) -> bytes:
        """Bytes until ``pred`` holds, the peer closes, or ``limit`` (fake) seconds."""
        buf = b""
        with trio.move_on_after(limit):
            while not pred(buf):
                try:
                    chunk = await self.client.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                if not chunk:
                    break
                buf += chunk
        return buf

    async def read_all(self, limit: float = 60.0) -> bytes:
        return await self.read_until(lambda _b: False, limit)


def open_conn(nursery: trio.Nursery, front: Front, where: Bound, *,
              budget: MemoryBudget | None = None, fds: list[int] | None = None,
              counters: Counters | None = None) -> Conn:
    """Start one session of ``front`` under the toolkit's fault guard."""
    client, server = trio.testing.memory_stream_pair()
    transport = StreamTransport(server, fds=fds)
    held = Held(budget)
    counters = counters if counters is not None else Counters()
    done = trio.Event()
    session = front.open_session(transport, where, held)

    async def run() -> None:
        try:
            await serve_guarded(front.name, session, transport, counters, where.name)
        finally:
            held.release()
            done.set()

    nursery.start_soon(run)
    return Conn(client, transport, held, counters, done)
