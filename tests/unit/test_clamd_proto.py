"""The sans-IO clamd protocol and its reply texts (PROTOCOL.md §6), without sockets."""

from __future__ import annotations

import struct

import pytest

from scand.config import ConfigError, from_mapping
from scand.events import CLEAN, Infected, Reason, Unchecked
from scand.fronts import clamd_reply
from scand.fronts.budget import MemoryBudget
from scand.fronts.clamd_proto import (
    CLOSED,
    NEED_DATA,
    STREAM_BUSY,
    ClamdConnection,
    EndSession,
    FdScan,
    PathScan,
    Reply,
    Simple,
    StreamScan,
    Tag,
    frame,
)
from scand.fronts.clamd_walk import display, list_tree


def events(data: bytes | list[bytes], **kw: object) -> list[object]:
    conn = ClamdConnection(**kw)  # type: ignore[arg-type]
    out: list[object] = []
    for packet in [data] if isinstance(data, bytes) else data:
        conn.receive_data(packet)
        while (ev := conn.next_event()) not in (NEED_DATA, CLOSED):
            out.append(ev)
    conn.receive_data(b"")
    while (ev := conn.next_event()) not in (NEED_DATA, CLOSED):
        out.append(ev)
    return out


def chunk(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data


@pytest.mark.parametrize(("raw", "want"), [
    (b"zPING\0", [Simple(Tag(b"\0"), "PING")]),
    (b"nPING\n", [Simple(Tag(b"\n"), "PING")]),
    (b"nPING\r\n", [Simple(Tag(b"\n"), "PING")]),
    (b"PING", [Simple(Tag(b"\n"), "PING")]),  # old style, no LF
    (b"PING\nVERSION\n", [Simple(Tag(b"\n"), "PING")]),  # the rest is ignored
    (b"nPING\nnVERSION\n", [Simple(Tag(b"\n"), "PING")]),  # one command per connection
    (b"nQUIT\n", [Simple(Tag(), "SHUTDOWN")]),
    (b"zPING\r\0", [Reply(Tag(b"\0"), "UNKNOWN COMMAND")]),  # CR is only dropped for n
    (b"nSCAN\n", [Reply(Tag(), "UNKNOWN COMMAND")]),
    (b"nPINGx\n", [Reply(Tag(), "UNKNOWN COMMAND")]),
    (b"nPING \n", [Reply(Tag(), "UNKNOWN COMMAND")]),
    (b" PING\n", [Reply(Tag(), "UNKNOWN COMMAND")]),
    (b"STATS\n", [Reply(Tag(), "UNKNOWN COMMAND")]),  # not accepted old style
    (b"INSTREAM\n", [Reply(Tag(), "UNKNOWN COMMAND")]),
    (b"nEND\n", [Reply(Tag(), "UNKNOWN COMMAND")]),
    (b"nSCAN /a b\n", [PathScan(Tag(), "SCAN", "/a b")]),
    (b"nSCANX/a\n", [PathScan(Tag(), "SCAN", "/a")]),  # the byte after the word is skipped
    (b"nSCAN \n", [PathScan(Tag(), "SCAN", "")]),
    (b"zCONTSCAN /x\0", [PathScan(Tag(b"\0"), "CONTSCAN", "/x")]),
    (b"MULTISCAN /x\r\n", [PathScan(Tag(), "MULTISCAN", "/x")]),
    (b"nALLMATCHSCAN /x\n", [PathScan(Tag(), "ALLMATCHSCAN", "/x")]),
    (b"nDETSTATS\n", [Reply(Tag(), "")]),
    (b"x", [Reply(Tag(), "UNKNOWN COMMAND")]),  # cannot become a command: answered now
])
def test_commands(raw: bytes, want: list[object]) -> None:
    assert events(raw) == want
    # Byte by byte gives the same (old style waits for its LF instead of the packet end).
    if not raw.startswith((b"PING", b"x")):
        assert events([raw[i : i + 1] for i in range(len(raw))]) == want


def test_instream_chunks_and_limit() -> None:
    body = chunk(b"hello ") + chunk(b"world") + chunk(b"")
    want = [StreamScan(Tag(b"\0"), b"hello world")]
    assert events(b"zINSTREAM\0" + body) == want
    raw = b"zINSTREAM\0" + body
    assert events([raw[i : i + 1] for i in range(len(raw))]) == want
    assert events(b"zINSTREAM\0" + chunk(b"")) == [StreamScan(Tag(b"\0"), b"")]
    # The quota is checked at each chunk header, before its data arrives.
    over = b"nINSTREAM\n" + chunk(b"x" * 10) + struct.pack("!I", 11)
    assert events(over, max_stream=20) == [Reply(Tag(), "INSTREAM size limit exceeded. ERROR")]
    assert events(b"nINSTREAM\n" + chunk(b"x" * 20) + chunk(b""), max_stream=20) == [
        StreamScan(Tag(), b"x" * 20)]
    # A client that leaves mid-stream gets nothing.
    assert events(b"nINSTREAM\n" + chunk(b"abc")[:5]) == []


def test_idsession_numbering_and_end() -> None:
    raw = (b"zIDSESSION\0zPING\0nSCAN /a\n" + b"zINSTREAM\0" + chunk(b"x") + chunk(b"")
           + b"zVERSION\0zEND\0zPING\0")
    assert events(raw) == [
        Simple(Tag(b"\0", 1), "PING"), PathScan(Tag(b"\n", 2), "SCAN", "/a"),
        StreamScan(Tag(b"\0", 3), b"x"), Simple(Tag(b"\0", 4), "VERSION"), EndSession()]
    # Half-close ends the session as END does.
    assert events(b"nIDSESSION\nnPING\n") == [Simple(Tag(b"\n", 1), "PING"), EndSession()]


INVALID = "Command invalid inside IDSESSION. ERROR"
ONLY = "Only nCMDS\\n and zCMDS\\0 are accepted inside IDSESSION. ERROR"


@pytest.mark.parametrize(("raw", "want"), [
    (b"nIDSESSION\nnCONTSCAN /x\n", Reply(Tag(b"\n", 1), INVALID)),
    (b"nIDSESSION\nnIDSESSION\n", Reply(Tag(b"\n", 1), INVALID)),
    (b"nIDSESSION\nnFOO\n", Reply(Tag(b"\n", 1), INVALID)),
    (b"nIDSESSION\nPING\n", Reply(Tag(b"\n", 1), ONLY)),
])
def test_idsession_errors_end_it(raw: bytes, want: Reply) -> None:
    assert events(raw + b"nPING\n") == [want]


def test_fildes() -> None:
    conn = ClamdConnection()
    conn.receive_data(b"zFILDES\0")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"x", [42])
    assert conn.next_event() == FdScan(Tag(b"\0"), 42)
    # The dummy byte without a descriptor.
    assert events(b"nFILDES\nx") == [Reply(Tag(), "No file descriptor received. ERROR")]
    # Over TCP no descriptor can arrive.
    conn = ClamdConnection(fd_passing=False)
    conn.receive_data(b"nFILDES\nx", [7])
    assert conn.next_event() == Reply(Tag(), "No file descriptor received. ERROR")
    assert conn.take_fds() == [7]  # the glue closes it
    # A descriptor with another command.
    conn = ClamdConnection()
    conn.receive_data(b"nIDSESSION\n")
    conn.receive_data(b"nPING\n", [9])
    assert conn.next_event() == Reply(Tag(b"\n", 1),
                                      "PROTOCOL ERROR: ancillary data sent without FILDES. ERROR")


def test_overlong_command_closes_silently() -> None:
    assert events(b"nSCAN /" + b"a" * 5000) == []


def test_frame_and_texts() -> None:
    assert frame(Tag(b"\0", 3), "PONG") == b"3: PONG\0"
    assert clamd_reply.line("/x", CLEAN) == "/x: OK"
    assert clamd_reply.line("/x", Infected("Eicar Test")) == "/x: Eicar_Test FOUND"
    unchecked = Unchecked(Reason.TOO_LARGE, "99>10")
    assert clamd_reply.line("stream", unchecked) == "stream: too-large ERROR"
    assert clamd_reply.line("stream", unchecked, as_found=True) == (
        "stream: Scand.Unchecked.too-large FOUND")
    assert clamd_reply.line("/a\nb", CLEAN) == "/a?b: OK"
    assert clamd_reply.version_text("0.1.0", "sigs=12", "Tue Dec  1 00:00:00 2026") == (
        "scand 0.1.0/12/Tue Dec  1 00:00:00 2026")
    assert clamd_reply.version_text("0.1.0", "unknown", "x") == "scand 0.1.0"
    stats = clamd_reply.stats_text({"live": 2, "idle": 1, "size": 2, "queue": 0, "workers": [
        {"pid": 5, "state": "busy", "age": 1.5, "rss": 2**20, "jobs": 3}]}, 30)
    assert stats.startswith("POOLS: 1\n\nSTATE: VALID PRIMARY\nTHREADS: live 2  idle 1 max 2 ")
    assert "\tSCAN 1.500000 pid=5 rss=1.000M jobs=3\n" in stats and stats.endswith("\nEND")


def test_walk_order_limits_and_display(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path))
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "b" / "c" / "deep.txt").write_text("x")
    (root / "top.txt").write_text("x")
    files = list_tree(str(root) + "/", (), 100, 10)
    assert sorted(p for p, _ in files) == [f"{root}/a/b/c/deep.txt", f"{root}/top.txt"]
    assert all(problem is None for _, problem in files)
    too_deep = list_tree(str(root), (), 100, 1)
    assert too_deep[-1][1] is not None and too_deep[-1][1].reason == Reason.TOO_DEEP
    too_many = list_tree(str(root), (), 1, 10)
    assert too_many[-1][1] is not None and too_many[-1][1].reason == Reason.TOO_MANY_FILES
    assert display("/a/b//") == "/a/b" and display("/") == "/"


def test_config_section() -> None:
    cfg = from_mapping({"clamd_front": {"socket": "/run/c.ctl", "socket_mode": "0666"}})
    assert cfg.clamd_front.socket_mode == 0o666 and not cfg.clamd_front.unchecked_as_found
    with pytest.raises(ConfigError, match=r"clamd_front.tcp_allow: required"):
        from_mapping({"clamd_front": {"tcp": ["127.0.0.1:3310"]}})
    with pytest.raises(ConfigError, match=r"clamd_front.tcp_allow: not a network"):
        from_mapping({"clamd_front": {"tcp": ["127.0.0.1:3310"], "tcp_allow": ["nope"]}})
    with pytest.raises(ConfigError, match=r"clamd_front.tls_key"):
        from_mapping({"clamd_front": {"tls_cert": "/x.pem"}})
    with pytest.raises(ConfigError, match=r"clamd_front.bogus: unknown key"):
        from_mapping({"clamd_front": {"bogus": 1}})


def test_stream_budget_is_shared_and_released() -> None:
    budget = MemoryBudget(100)
    first = ClamdConnection(budget=budget)
    first.receive_data(b"zINSTREAM\0" + chunk(b"a" * 80) + chunk(b""))
    assert first.next_event() == StreamScan(Tag(b"\0"), b"a" * 80)
    assert budget.used == 80 and first.held == 80
    second = ClamdConnection(budget=budget)
    second.receive_data(b"zINSTREAM\0" + struct.pack("!I", 30))
    assert second.next_event() == Reply(Tag(b"\0"), STREAM_BUSY)
    first.release(80)  # the scan of the first stream is done
    assert budget.used == 0
    third = ClamdConnection(budget=budget)
    third.receive_data(b"zINSTREAM\0" + chunk(b"b" * 30) + chunk(b""))
    assert third.next_event() == StreamScan(Tag(b"\0"), b"b" * 30)
    # A client that leaves mid-stream: the glue releases what its parser held.
    fourth = ClamdConnection(budget=budget)
    fourth.receive_data(b"zINSTREAM\0" + chunk(b"c" * 50)[:20])
    assert fourth.next_event() is NEED_DATA and budget.used == 80
    fourth.release(fourth.held)
    assert budget.used == 30
