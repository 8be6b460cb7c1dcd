"""In-process tests of the service (commands, draining, reload, STATS) over the real
pool with fake workers, and of a whole Sophie exchange on a memory stream."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

import scand
from scand import config as configmod
from scand.config import Config
from scand.events import BadRequest, Command, Reason, ScanPath, ScanStream
from scand.fronts.accept import Counters, serve_guarded
from scand.fronts.sophie import ClientConnection
from scand.fronts.transport import StreamTransport
from scand.pool.pool import Pool
from scand.service import Service
from tests.inproc.fakes import FakeSpawner

ServiceFactory = Callable[..., Any]


def version(signatures: str) -> bytes:
    return f"scand {scand.__version__} fake {signatures}\n".encode()


@pytest.fixture
def make_service(nursery: trio.Nursery) -> ServiceFactory:
    async def make(**pool: Any) -> tuple[Service, FakeSpawner]:
        cfg = configmod.override(Config(), "pool", **{"workers": 1, **pool})
        spawner = FakeSpawner(nursery)
        p = Pool(cfg, spawner)
        await nursery.start(p.run)
        service = Service(cfg, p, lambda: cfg)
        await nursery.start(service.run)
        return service, spawner

    return make


async def test_control_lines(make_service: ServiceFactory, autojump_clock: object) -> None:
    service, _ = await make_service()
    assert await service.handle(Command("PING")) == b"PONG\n"
    assert await service.handle(Command("VERSION")) == version("gen=0")


async def test_stats_is_one_json_line(make_service: ServiceFactory,
                                      autojump_clock: object) -> None:
    service, _ = await make_service()
    await service.handle(ScanStream(b"virus"))
    await service.handle(ScanStream(b"x"))
    line = await service.handle(Command("STATS"))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    stats = json.loads(line)
    assert stats["requests"] == 2 and stats["pool"]["jobs_total"] == 2
    assert stats["engine"]["name"] == "fake"


async def test_verdicts_are_formatted(make_service: ServiceFactory,
                                      autojump_clock: object) -> None:
    service, _ = await make_service()
    assert await service.handle(ScanStream(b"virus")) == b"1:Fake.Virus\n"
    assert await service.handle(ScanPath("/anything")) == b"0\n"
    assert await service.handle(ScanStream(b"crash")) == b"-1:worker-crashed\n"
    assert await service.handle(BadRequest(Reason.PROTOCOL, "x")) == b"-1:protocol x\n"


async def test_draining_refuses_new_scans(make_service: ServiceFactory,
                                          autojump_clock: object) -> None:
    service, _ = await make_service()
    service.draining = True
    assert await service.handle(ScanStream(b"x")) == b"-1:shutting-down\n"
    assert await service.handle(Command("PING")) == b"PONG\n"  # control still answers


async def test_reload_rolls_over_in_the_background(make_service: ServiceFactory,
                                                   autojump_clock: object) -> None:
    service, spawner = await make_service()
    assert await service.handle(Command("RELOAD")) == b"RELOADING\n"
    await trio.sleep(5)
    assert await service.handle(Command("VERSION")) == version("gen=1")
    assert {p.generation for p in spawner.live()} == {1}


async def test_a_failed_reload_keeps_the_old_set(make_service: ServiceFactory,
                                                 autojump_clock: object) -> None:
    service, spawner = await make_service()
    spawner.bad_generations.add(1)
    assert await service.reload() is False
    assert await service.handle(Command("VERSION")) == version("gen=0")
    assert await service.handle(ScanStream(b"virus")) == b"1:Fake.Virus\n"


async def test_a_whole_exchange_on_a_memory_stream(make_service: ServiceFactory,
                                                   autojump_clock: object,
                                                   nursery: trio.Nursery) -> None:
    """Connection + service + pool + fake workers: the daemon minus its sockets."""
    service, _ = await make_service(workers=2, queue_size=1, scan_timeout=3.0)
    client, server = trio.testing.memory_stream_pair()
    transport = StreamTransport(server)
    conn = ClientConnection(transport, service)
    nursery.start_soon(serve_guarded, "sophie", conn, transport, Counters())
    await client.send_all(b"PING\nSTREAM 5\nvirusSTREAM 9\nsleep 100/a\n")
    buf = b""
    while buf.count(b"\n") < 4:
        buf += await client.receive_some(4096)
    assert buf.splitlines() == [b"PONG", b"1:Fake.Virus", b"-1:timeout scan over 3s", b"0"]


async def test_busy_when_the_queue_is_full(make_service: ServiceFactory,
                                           autojump_clock: object) -> None:
    service, _ = await make_service(workers=1, queue_size=0, cancel_grace=0.1)
    async with trio.open_nursery() as inner:
        inner.start_soon(service.handle, ScanStream(b"sleep 50"))
        await trio.sleep(1)
        reply = await service.handle(ScanStream(b"x"))
        assert reply.startswith(b"-1:busy")
        inner.cancel_scope.cancel()
