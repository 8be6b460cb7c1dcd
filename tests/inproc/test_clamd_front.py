"""The clamd front in-process: its real session and handler with the real service and
pool (fake workers) on memory streams, the autojump clock for deadlines; and the
network rule (over TCP: no file reading, one refusal whatever the path)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import trio
import trio.testing

from scand import config as configmod
from scand.config import Config
from scand.fronts.clamd_session import ClamdFront
from tests.inproc.frontkit import bound, make_service, open_conn


def chunk(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data


def instream(data: bytes, prefix: bytes = b"z", term: bytes = b"\0") -> bytes:
    return prefix + b"INSTREAM" + term + chunk(data) + struct.pack("!I", 0)


async def test_ping_version_and_instream(nursery: trio.Nursery, autojump_clock: object) -> None:
    service = await make_service(nursery)
    front = ClamdFront(service)
    conn = open_conn(nursery, front, bound())
    await conn.send(b"zIDSESSION\0zPING\0zVERSION\0" + instream(b"virus") + instream(b"ok")
                    + b"zEND\0")
    reply = await conn.read_all()
    parts = reply.split(b"\0")[:-1]
    assert parts[0] == b"1: PONG" and parts[1].startswith(b"2: scand ")
    assert parts[2:] == [b"3: stream: Fake.Virus FOUND", b"4: stream: OK"]


async def test_deadline_runs_from_accept(nursery: trio.Nursery, autojump_clock: object) -> None:
    """clamd's CommandReadTimeout: a client that dribbles never resets it."""
    service = await make_service(nursery)
    conn = open_conn(nursery, ClamdFront(service), bound())
    t0 = trio.current_time()
    for byte in b"nPIN":
        await conn.send(bytes([byte]))
        await trio.sleep(5)
    reply = await conn.read_all()
    assert reply == b"COMMAND READ TIMED OUT\n"
    assert 29.0 <= trio.current_time() - t0 <= 31.0


async def test_oversized_instream_is_refused_at_its_chunk_header(
        nursery: trio.Nursery, autojump_clock: object) -> None:
    cfg = configmod.override(Config(), "server", max_stream_bytes=1000)
    service = await make_service(nursery, cfg)
    conn = open_conn(nursery, ClamdFront(service), bound())
    await conn.send(b"zINSTREAM\0" + struct.pack("!I", 5000))
    assert await conn.read_all() == b"INSTREAM size limit exceeded. ERROR\0"


async def test_half_closed_client_still_gets_its_reply(nursery: trio.Nursery,
                                                       autojump_clock: object) -> None:
    service = await make_service(nursery)
    conn = open_conn(nursery, ClamdFront(service), bound())
    await conn.send(instream(b"sleep 3"))
    await conn.client.send_eof()
    assert await conn.read_all() == b"stream: OK\0"


async def test_malformed_and_unknown_commands(nursery: trio.Nursery,
                                              autojump_clock: object) -> None:
    service = await make_service(nursery)
    conn = open_conn(nursery, ClamdFront(service), bound())
    await conn.send(b"nFROB\n")
    assert await conn.read_all() == b"UNKNOWN COMMAND\n"


# -- the network rule ---------------------------------------------------------------

NETWORK_REFUSED = [
    (b"nSCAN {existing}\n", b"SCAN command not allowed over TCP. ERROR\n"),
    (b"nSCAN {missing}\n", b"SCAN command not allowed over TCP. ERROR\n"),
    (b"nCONTSCAN {directory}\n", b"CONTSCAN command not allowed over TCP. ERROR\n"),
    (b"nCONTSCAN {missing}\n", b"CONTSCAN command not allowed over TCP. ERROR\n"),
    (b"nMULTISCAN {directory}\n", b"MULTISCAN command not allowed over TCP. ERROR\n"),
    (b"nALLMATCHSCAN {existing}\n", b"ALLMATCHSCAN command not allowed over TCP. ERROR\n"),
    (b"nRELOAD\n", b"RELOAD command not allowed over TCP. ERROR\n"),
    (b"nSHUTDOWN\n", b"SHUTDOWN command not allowed over TCP. ERROR\n"),
    (b"zIDSESSION\0zSCAN {existing}\0zEND\0",
     b"1: SCAN command not allowed over TCP. ERROR\0"),
]


@pytest.mark.parametrize(("request_", "expected"), NETWORK_REFUSED)
async def test_network_peers_read_no_files(request_: bytes, expected: bytes, tmp_path: Path,
                                          nursery: trio.Nursery) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x")
    names = {"existing": str(tmp_path / "d" / "f"), "missing": str(tmp_path / "nope"),
             "directory": str(tmp_path / "d")}
    service = await make_service(nursery)
    conn = open_conn(nursery, ClamdFront(service), bound("tcp"))
    await conn.send(request_.decode().format(**names).encode())
    assert await conn.read_all() == expected
    assert service.pool.jobs_done == 0


@pytest.mark.parametrize("request_", [b"nPING\n", b"nVERSION\n", b"nVERSIONCOMMANDS\n",
                                      b"nSTATS\n", instream(b"x", b"n", b"\n")])
async def test_network_peers_may_stream_and_ask(request_: bytes, nursery: trio.Nursery,
                                                autojump_clock: object) -> None:
    service = await make_service(nursery)
    conn = open_conn(nursery, ClamdFront(service), bound("tcp"))
    await conn.send(request_)
    reply = await conn.read_all()
    assert reply and b"not allowed" not in reply


async def test_tcp_allow_paths_opts_in(tmp_path: Path, nursery: trio.Nursery) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"x")
    cfg = configmod.from_mapping({"clamd_front": {"tcp_allow_paths": True}})
    service = await make_service(nursery, cfg)
    conn = open_conn(nursery, ClamdFront(service), bound("tcp"))
    await conn.send(f"nSCAN {target}\n".encode())
    assert await conn.read_all() == f"{target}: OK\n".encode()
    conn = open_conn(nursery, ClamdFront(service), bound("tcp"))
    await conn.send(b"nRELOAD\n")  # control commands stay refused
    assert await conn.read_all() == b"RELOAD command not allowed over TCP. ERROR\n"


async def test_unix_peers_still_scan_paths(tmp_path: Path, nursery: trio.Nursery) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"x")
    service = await make_service(nursery)
    conn = open_conn(nursery, ClamdFront(service), bound("unix"))
    await conn.send(f"nSCAN {target}\n".encode())
    assert await conn.read_all() == f"{target}: OK\n".encode()


async def test_fildes_waiting_for_a_session_slot_is_closed_when_the_client_leaves(
        tmp_path: Path, nursery: trio.Nursery, autojump_clock: object) -> None:
    """A FILDES parsed but still waiting for an IDSESSION slot owns its descriptor:
    the client leaving must not leak it (a local peer could run the daemon out)."""
    config = configmod.override(Config(), "clamd_front", session_requests=1)
    service = await make_service(nursery, config)
    target = tmp_path / "f"
    target.write_bytes(b"clean")
    fd = os.open(target, os.O_RDONLY)
    conn = open_conn(nursery, ClamdFront(service), bound(), fds=[fd])
    # The INSTREAM holds the only slot; the FILDES behind it waits for one.
    await conn.send(b"zIDSESSION\0" + instream(b"sleep 30") + b"zFILDES\0")
    await trio.testing.wait_all_tasks_blocked()
    conn.transport.gone = True
    await conn.client.aclose()
    await conn.done.wait()
    with pytest.raises(OSError):
        os.fstat(fd)
