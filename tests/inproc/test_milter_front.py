"""The milter front in-process: the real session with the real service and pool
(fake workers) on memory streams and the autojump clock."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import pytest
import trio

from scand import config as configmod
from scand.config import Config
from scand.events import Infected
from scand.milter import protocol as mp
from scand.milter.server import MilterFront
from scand.pool.pool import Pool
from scand.worker.wire import Outcome
from tests.inproc.frontkit import bound, make_service, open_conn


def pkt(cmd: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + cmd + data


NEGOTIATE = pkt(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF))


def message(body: bytes) -> bytes:
    return b"".join([pkt(b"D", b"Mi\0Q1\0"), pkt(b"L", b"Subject\0hi\0"),
                     pkt(b"B", body), pkt(b"E")])


@pytest.fixture
async def front(nursery: trio.Nursery) -> AsyncIterator[MilterFront]:
    service = await make_service(nursery)
    f = MilterFront(service)
    yield f
    f.close()


async def test_clean_message_continues(front: MilterFront, nursery: trio.Nursery,
                                       autojump_clock: object) -> None:
    conn = open_conn(nursery, front, bound())
    await conn.send(NEGOTIATE + message(b"hello\r\n"))
    reply = await conn.read_until(lambda b: b.endswith(mp.reply_continue()), limit=10)
    assert reply.endswith(mp.reply_continue()) and b"554" not in reply


async def test_infected_message_is_rejected(front: MilterFront, nursery: trio.Nursery,
                                            monkeypatch: pytest.MonkeyPatch,
                                            autojump_clock: object) -> None:
    async def infected(self: Pool, **_kw: object) -> Outcome:
        return Outcome(Infected("Fake.Virus"))

    monkeypatch.setattr(Pool, "scan", infected)
    conn = open_conn(nursery, front, bound())
    await conn.send(NEGOTIATE + message(b"x\r\n"))
    reply = await conn.read_until(lambda b: b"Fake.Virus" in b, limit=10)
    assert b"554 5.7.1 Message rejected: Fake.Virus" in reply


async def test_unscanned_is_a_tempfail(nursery: trio.Nursery, autojump_clock: object) -> None:
    cfg = configmod.override(Config(), "milter", max_message_bytes=10)
    service = await make_service(nursery, cfg)
    front = MilterFront(service)
    try:
        conn = open_conn(nursery, front, bound())
        await conn.send(NEGOTIATE + message(b"x" * 100))
        reply = await conn.read_until(lambda b: b"451 4.7.1" in b, limit=10)
        assert b"451 4.7.1" in reply and b"too-large" in reply
    finally:
        front.close()


async def test_oversized_packet_ends_the_connection(front: MilterFront, nursery: trio.Nursery,
                                                    autojump_clock: object) -> None:
    conn = open_conn(nursery, front, bound())
    await conn.send(NEGOTIATE + struct.pack(">I", 50 * 1024 * 1024) + b"B")
    await conn.read_all(limit=10)
    await conn.done.wait()
    assert conn.counters.faults == 0


async def test_idle_connection_closes_at_the_idle_timeout(nursery: trio.Nursery,
                                                          autojump_clock: object) -> None:
    cfg = configmod.override(Config(), "milter", idle_timeout=60.0)
    service = await make_service(nursery, cfg)
    front = MilterFront(service)
    try:
        conn = open_conn(nursery, front, bound())
        t0 = trio.current_time()
        await conn.send(NEGOTIATE)
        await conn.read_all(limit=600)
        await conn.done.wait()
        assert 59 <= trio.current_time() - t0 <= 61
    finally:
        front.close()


async def test_drain_closes_between_messages(front: MilterFront, nursery: trio.Nursery,
                                             autojump_clock: object) -> None:
    from scand.fronts.accept import Counters, serve_guarded
    from scand.fronts.budget import Held
    from scand.fronts.transport import StreamTransport

    client, server = trio.testing.memory_stream_pair()
    transport = StreamTransport(server)
    session = front.open_session(transport, bound(), Held(None))
    done = trio.Event()

    async def run() -> None:
        await serve_guarded("milter", session, transport, Counters())
        done.set()

    nursery.start_soon(run)
    await client.send_all(NEGOTIATE)
    await trio.testing.wait_all_tasks_blocked()
    session.drain()
    with trio.fail_after(1):
        await done.wait()
