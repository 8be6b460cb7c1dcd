"""One daemon-wide memory budget, every front: a request that does not fit gets its
front's busy answer at once, and a connection's end gives back all it held.
In-process on memory streams (real sessions, service, pool with fake workers)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import trio
import trio.testing

from scand import config as configmod
from scand.config import Config
from scand.fronts.budget import MemoryBudget, budget_bytes
from scand.fronts.clamd_session import ClamdFront
from scand.fronts.sophie import SophieFront
from scand.milter import protocol as mp
from scand.milter.server import MilterFront
from tests.inproc.frontkit import bound, make_service, open_conn

MiB = 1024 * 1024


async def test_sophie_stream_over_the_budget_is_busy_at_once(
        nursery: trio.Nursery, autojump_clock: object) -> None:
    service = await make_service(nursery)
    budget = MemoryBudget(100)
    front = SophieFront(service)
    holder = open_conn(nursery, front, bound(), budget=budget)
    await holder.send(b"STREAM 80\n" + b"x" * 10)  # declared 80: held until answered
    await trio.testing.wait_all_tasks_blocked()
    assert budget.used == 80
    late = open_conn(nursery, front, bound(), budget=budget)
    t0 = trio.current_time()
    await late.send(b"STREAM 80\n")
    reply = await late.read_all()
    assert reply.startswith(b"-1:busy") and trio.current_time() - t0 < 1.0
    await holder.send(b"x" * 70)
    assert await holder.read_until(lambda b: b.endswith(b"\n")) == b"0\n"
    await trio.testing.wait_all_tasks_blocked()
    assert budget.used == 0


async def test_sophie_connection_that_leaves_gives_its_bytes_back(
        nursery: trio.Nursery, autojump_clock: object) -> None:
    service = await make_service(nursery)
    budget = MemoryBudget(1000)
    conn = open_conn(nursery, SophieFront(service), bound(), budget=budget)
    await conn.send(b"STREAM 500\nabc")
    await trio.testing.wait_all_tasks_blocked()
    assert budget.used == 500
    conn.transport.gone = True
    await conn.client.aclose()
    await conn.done.wait()
    assert budget.used == 0


async def test_clamd_instream_over_the_budget_is_busy(
        nursery: trio.Nursery, autojump_clock: object) -> None:
    service = await make_service(nursery)
    budget = MemoryBudget(1000)
    front = ClamdFront(service)
    holder = open_conn(nursery, front, bound(), budget=budget)
    await holder.send(b"zINSTREAM\0" + struct.pack("!I", 900) + b"y" * 100)
    await trio.testing.wait_all_tasks_blocked()
    late = open_conn(nursery, front, bound(), budget=budget)
    await late.send(b"zINSTREAM\0" + struct.pack("!I", 200) + b"z" * 200)
    assert await late.read_all() == b"stream: busy ERROR\0"
    await holder.send(b"y" * 800 + struct.pack("!I", 0))
    assert await holder.read_all() == b"stream: OK\0"
    await holder.done.wait()
    assert budget.used == 0


async def test_clamd_fildes_read_is_charged(nursery: trio.Nursery, tmp_path: Path) -> None:
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(5 * MiB)  # sparse: costs nothing on disk, 5 MiB in the daemon
    service = await make_service(nursery)
    budget = MemoryBudget(4 * MiB)
    fd = os.open(big, os.O_RDONLY)
    conn = open_conn(nursery, ClamdFront(service), bound(), budget=budget, fds=[fd])
    await conn.send(b"nFILDES\n")
    reply = await conn.read_all()
    assert reply.startswith(b"fd[") and reply.endswith(b": busy ERROR\n"), reply
    assert budget.used == 0 and budget.refused == 1


def pkt(cmd: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + cmd + data


NEGOTIATE = pkt(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF))


async def test_milter_message_over_the_budget_is_a_tempfail(
        nursery: trio.Nursery, autojump_clock: object) -> None:
    service = await make_service(nursery)
    front = MilterFront(service)
    try:
        budget = MemoryBudget(64 * 1024)
        conn = open_conn(nursery, front, bound(), budget=budget)
        await conn.send(NEGOTIATE + pkt(b"L", b"Subject\0hi\0"))
        for _ in range(10):
            await conn.send(pkt(b"B", b"b" * 16 * 1024))
        reply = await conn.read_all()
        assert b"451 4.7.1" in reply and b"busy" in reply, reply
        await conn.done.wait()
        assert budget.used == 0
    finally:
        front.close()


async def test_milter_macros_are_charged_and_freed(
        nursery: trio.Nursery, autojump_clock: object) -> None:
    service = await make_service(nursery)
    front = MilterFront(service)
    try:
        # Under the per-connection macro bound (MAX_MACRO_BYTES), over this budget.
        budget = MemoryBudget(32 * 1024)
        conn = open_conn(nursery, front, bound(), budget=budget)
        await conn.send(NEGOTIATE)
        for i in range(10):
            await conn.send(pkt(b"D", b"M" + f"m{i}".encode() + b"\0" + b"v" * 4 * 1024 + b"\0"))
        reply = await conn.read_all()
        assert reply.endswith(mp.reply_code(
            "451 4.7.1 Message not scanned (busy), try again later")), reply[-80:]
        await conn.done.wait()
        assert budget.used == 0
    finally:
        front.close()


def test_budget_key_and_its_old_name() -> None:
    default = Config()
    assert budget_bytes(default.server.memory_budget_mb, default.clamd_front.stream_memory_mb,
                        default.server.max_stream_bytes) == 16 * default.server.max_stream_bytes
    cfg = configmod.from_mapping({"clamd_front": {"stream_memory_mb": 100}})
    assert budget_bytes(cfg.server.memory_budget_mb, cfg.clamd_front.stream_memory_mb,
                        cfg.server.max_stream_bytes) == 100 * MiB
    cfg = configmod.from_mapping({"server": {"memory_budget_mb": 64},
                                  "clamd_front": {"stream_memory_mb": 100}})
    assert budget_bytes(cfg.server.memory_budget_mb, cfg.clamd_front.stream_memory_mb,
                        cfg.server.max_stream_bytes) == 64 * MiB
