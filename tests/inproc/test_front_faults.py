"""A fault costs one connection: an exception injected at every stage of every front
ends that connection only, with the front's unscanned answer, one counted fault and
one log line; a second connection opened before the fault is answered normally after
it. In-process: real sessions, service and pool with fake workers, autojump clock."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import scand.fronts.clamd_handler as clamd_handler
import scand.fronts.sophie as sophie
import scand.service
from scand.fronts.accept import Counters
from scand.fronts.clamd_proto import ClamdConnection
from scand.fronts.clamd_session import ClamdFront
from scand.fronts.sophie import SophieFront
from scand.milter import protocol as mp
from scand.milter.message import MessageBuffer
from scand.milter.server import MilterFront
from scand.milter.session import MilterSession
from scand.pool.pool import Pool
from scand.protocol import Connection
from scand.service import Service
from tests.inproc.frontkit import bound, make_service, open_conn


class Injected(RuntimeError):
    """The fault a test injects."""


def once(original: Callable[..., Any], exc: BaseException) -> Callable[..., Any]:
    """``original``, except that its first call raises ``exc``."""
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise exc
        return original(*args, **kwargs)

    return wrapper


def once_async(original: Callable[..., Any], exc: BaseException) -> Callable[..., Any]:
    calls = [0]

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise exc
        return await original(*args, **kwargs)

    return wrapper


# -- Sophie -------------------------------------------------------------------------

SOPHIE_STAGES: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "parse": lambda mp_: mp_.setattr(Connection, "next_event",
                                     once(Connection.next_event, Injected("parse"))),
    "policy": lambda mp_: mp_.setattr(sophie, "network_filter",
                                      once(sophie.network_filter, Injected("policy"))),
    "scan": lambda mp_: mp_.setattr(Service, "scan",
                                    once_async(Service.scan, Injected("scan"))),
    "reply": lambda mp_: mp_.setattr(scand.service, "format_verdict",
                                     once(scand.service.format_verdict, ValueError("reply"))),
}


@pytest.mark.parametrize("stage", sorted(SOPHIE_STAGES))
async def test_sophie_fault_costs_one_connection(stage: str, nursery: trio.Nursery,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 autojump_clock: object) -> None:
    service = await make_service(nursery)
    front = SophieFront(service)
    where = bound("tcp")  # over TCP, so the network rule runs too
    counters = Counters()
    other = open_conn(nursery, front, where, counters=counters)
    await trio.testing.wait_all_tasks_blocked()
    SOPHIE_STAGES[stage](monkeypatch)
    victim = open_conn(nursery, front, where, counters=counters)
    await victim.send(b"STREAM 5\nvirus")
    reply = await victim.read_all()
    assert reply.startswith(b"-1:internal"), reply
    await victim.done.wait()
    assert counters.faults == 1 and victim.transport.closed
    await other.send(b"STREAM 5\nvirus")
    assert await other.read_until(lambda b: b.endswith(b"\n")) == b"1:Fake.Virus\n"


# -- clamd --------------------------------------------------------------------------

def _clamd_stage(mp_: pytest.MonkeyPatch, stage: str) -> None:
    if stage == "parse":
        mp_.setattr(ClamdConnection, "next_event",
                    once(ClamdConnection.next_event, Injected("parse")))
    elif stage == "path-check":
        mp_.setattr(clamd_handler, "inspect",
                    once(clamd_handler.inspect, ValueError("embedded null byte")))
    elif stage == "walk":
        mp_.setattr(clamd_handler, "list_tree",
                    once(clamd_handler.list_tree, RecursionError("symlink chain")))
    elif stage == "scan":
        mp_.setattr(Service, "scan", once_async(Service.scan, Injected("scan")))
    elif stage == "reply":
        mp_.setattr(clamd_handler.text, "line", once(clamd_handler.text.line, Injected("reply")))


CLAMD_STAGES = ("parse", "path-check", "walk", "scan", "reply")


@pytest.mark.parametrize("stage", CLAMD_STAGES)
async def test_clamd_fault_costs_one_connection(stage: str, nursery: trio.Nursery,
                                                monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    # A real clock: the path check and the walk run in threads, which the autojump
    # clock does not wait for.
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x")
    service = await make_service(nursery)
    front = ClamdFront(service)
    where = bound("unix")
    counters = Counters()
    other = open_conn(nursery, front, where, counters=counters)
    await trio.testing.wait_all_tasks_blocked()
    _clamd_stage(monkeypatch, stage)
    victim = open_conn(nursery, front, where, counters=counters)
    target = tmp_path / "d" if stage == "walk" else tmp_path / "d" / "f"
    await victim.send(f"nCONTSCAN {target}\n".encode())
    reply = await victim.read_all()
    await victim.done.wait()
    assert reply.endswith(b"internal ERROR\n"), reply
    assert b"OK" not in reply and counters.faults == 1
    if stage in ("path-check", "walk", "scan", "reply"):
        assert reply.startswith(str(target).encode()), reply  # <path>: internal ERROR
    await other.send(b"nPING\n")
    assert await other.read_until(lambda b: b.endswith(b"\n")) == b"PONG\n"


async def test_clamd_fault_in_a_fildes_read(nursery: trio.Nursery, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    path = tmp_path / "f"
    path.write_bytes(b"x")
    service = await make_service(nursery)
    monkeypatch.setattr(clamd_handler, "read_fd", once(clamd_handler.read_fd, Injected("read")))
    fd = os.open(path, os.O_RDONLY)
    counters = Counters()
    victim = open_conn(nursery, ClamdFront(service), bound("unix"), fds=[fd],
                       counters=counters)
    await victim.send(b"nFILDES\n")
    reply = await victim.read_all()
    assert reply.startswith(b"fd[") and reply.endswith(b"internal ERROR\n"), reply
    assert counters.faults == 1


async def test_clamd_fault_in_idsession_names_the_request(nursery: trio.Nursery,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         autojump_clock: object) -> None:
    service = await make_service(nursery)
    monkeypatch.setattr(Service, "scan", once_async(Service.scan, Injected("scan")))
    victim = open_conn(nursery, ClamdFront(service), bound("unix"))
    await victim.send(b"zIDSESSION\0zINSTREAM\0" + struct.pack("!I", 3) + b"abc"
                      + struct.pack("!I", 0))
    reply = await victim.read_all()
    assert reply == b"1: stream: internal ERROR\0", reply


# -- milter -------------------------------------------------------------------------

def pkt(cmd: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + cmd + data


MESSAGE = b"".join([
    pkt(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF)),
    pkt(b"D", b"Mi\0Q1\0"),
    pkt(b"L", b"Subject\0hello\0"),
    pkt(b"B", b"body\r\n"),
    pkt(b"E"),
])


def _milter_stage(mp_: pytest.MonkeyPatch, stage: str) -> None:
    if stage == "parse":
        mp_.setattr(mp.MilterParser, "next_event",
                    once(mp.MilterParser.next_event, Injected("parse")))
    elif stage == "spool-write":
        mp_.setattr(MessageBuffer, "header",
                    once(MessageBuffer.header, OSError(28, "No space left on device")))
    elif stage == "scan":
        mp_.setattr(Pool, "scan", once_async(Pool.scan, Injected("scan")))
    elif stage == "reply":
        mp_.setattr(MilterSession, "_replies", once(MilterSession._replies, Injected("reply")))


@pytest.mark.parametrize("stage", ["parse", "spool-write", "scan", "reply"])
async def test_milter_fault_costs_one_connection(stage: str, nursery: trio.Nursery,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 autojump_clock: object) -> None:
    service = await make_service(nursery)
    front = MilterFront(service)
    try:
        counters = Counters()
        other = open_conn(nursery, front, bound("unix"), counters=counters)
        await trio.testing.wait_all_tasks_blocked()
        _milter_stage(monkeypatch, stage)
        victim = open_conn(nursery, front, bound("unix"), counters=counters)
        await victim.send(MESSAGE)
        reply = await victim.read_all()
        await victim.done.wait()
        assert b"451 4.7.1" in reply and b"internal" in reply, reply
        assert counters.faults == 1
        await other.send(MESSAGE)
        ok = await other.read_until(lambda b: b.endswith(mp.reply_continue()))
        assert ok.endswith(mp.reply_continue()) and b"451" not in ok
    finally:
        front.close()


# -- metrics ------------------------------------------------------------------------

async def test_metrics_fault_costs_one_scrape(nursery: trio.Nursery,
                                              monkeypatch: pytest.MonkeyPatch,
                                              autojump_clock: object) -> None:
    pytest.importorskip("prometheus_client")
    import scand.metrics.http as http
    from scand.metrics.collector import make_registry

    service = await make_service(nursery)
    front = http.MetricsFront(make_registry(service, []))
    counters = Counters()
    monkeypatch.setattr(http, "generate_latest", once(http.generate_latest, Injected("scrape")))
    victim = open_conn(nursery, front, bound("tcp"), counters=counters)
    await victim.send(b"GET /metrics HTTP/1.0\r\n\r\n")
    assert (await victim.read_all()).startswith(b"HTTP/1.0 500 ")
    other = open_conn(nursery, front, bound("tcp"), counters=counters)
    await other.send(b"GET /metrics HTTP/1.0\r\n\r\n")
    reply = await other.read_all()
    assert reply.startswith(b"HTTP/1.0 200 OK") and b"scand_requests" in reply
    assert counters.faults == 1
