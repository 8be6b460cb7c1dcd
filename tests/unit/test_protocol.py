"""The sans-IO protocol: parsing, formatting, and golden transcripts at parser level."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scand import protocol
from scand.events import (
    CLOSED,
    NEED_DATA,
    BadRequest,
    Clean,
    Command,
    Infected,
    Reason,
    ScanPath,
    ScanStream,
    Unchecked,
)
from scand.protocol import Connection, format_verdict


def events(data: bytes, chunks: list[bytes] | None = None) -> list[object]:
    conn = Connection(max_stream=100)
    out: list[object] = []
    for chunk in chunks if chunks is not None else [data]:
        conn.receive_data(chunk)
        while (ev := conn.next_event()) not in (NEED_DATA, CLOSED):
            out.append(ev)
    return out


def test_paths_commands_and_errors() -> None:
    got = events(b"/a/b\n/dir/\nPING\nSTATS\nfoo\n\nrel/x\n/x\x00y\n/x\r\n")
    assert got == [
        ScanPath("/a/b"),
        ScanPath("/dir/"),
        Command("PING"),
        Command("STATS"),
        BadRequest(Reason.PROTOCOL, "not an absolute path or a known command"),
        BadRequest(Reason.PROTOCOL, "empty request"),
        BadRequest(Reason.PROTOCOL, "not an absolute path or a known command"),
        BadRequest(Reason.PROTOCOL, "NUL or CR in request"),
        BadRequest(Reason.PROTOCOL, "NUL or CR in request"),
    ]


def test_lf_in_later_packet() -> None:
    conn = Connection()
    conn.receive_data(b"/var/spool/x")
    assert conn.next_event() is NEED_DATA
    assert conn.mid_request
    conn.receive_data(b"\n")
    assert conn.next_event() == ScanPath("/var/spool/x")
    assert not conn.mid_request


def test_overlong_line_is_fatal() -> None:
    conn = Connection()
    conn.receive_data(b"/" + b"a" * 4096)
    ev = conn.next_event()
    assert isinstance(ev, BadRequest) and ev.fatal and ev.reason == Reason.PROTOCOL
    conn.receive_data(b"\n/ok\n")
    assert conn.next_event() is CLOSED
    # exactly MAX_LINE bytes before the LF is still a line
    assert events(b"/" + b"a" * 4095 + b"\n") == [ScanPath("/" + "a" * 4095)]


def test_stream_framing() -> None:
    assert events(b"STREAM 3\nabcPING\n") == [ScanStream(b"abc"), Command("PING")]
    assert events(b"STREAM 0\n") == [ScanStream(b"")]
    assert events(b"", [b"STREAM 3\n", b"a", b"b"]) == []  # body incomplete
    too_big = events(b"STREAM 101\n" + b"x" * 101)
    assert too_big == [BadRequest(Reason.TOO_LARGE, "101>100", fatal=True)]
    assert events(b"STREAM x\n") == [BadRequest(Reason.PROTOCOL, "STREAM needs a byte count",
                                                fatal=True)]


def test_eof_drops_partial_request() -> None:
    conn = Connection()
    conn.receive_data(b"/a\n/partial")
    conn.receive_data(b"")
    assert conn.next_event() == ScanPath("/a")
    assert conn.next_event() is CLOSED


def test_format_verdicts() -> None:
    assert format_verdict(Clean()) == b"0\n"
    assert format_verdict(Infected("Eicar-Test")) == b"1:Eicar-Test\n"
    assert format_verdict(Infected("")) == b"1:Unknown.Malware\n"
    assert format_verdict(Infected("a b\r\n\x00c")) == b"1:a_b___c\n"
    assert format_verdict(Unchecked(Reason.TIMEOUT)) == b"-1:timeout\n"
    assert format_verdict(Unchecked(Reason.TOO_LARGE, "52>26\nX")) == b"-1:too-large 52>26 X\n"


@given(st.text())
def test_infected_name_is_never_empty_or_spaced(name: str) -> None:
    line = format_verdict(Infected(name))
    assert line.startswith(b"1:") and line.endswith(b"\n") and len(line) > 3
    body = line[2:-1]
    assert not any(c in body for c in b" \r\n\x00\t")


@given(st.sampled_from(list(Reason)), st.text())
def test_unchecked_is_never_clean(reason: Reason, detail: str) -> None:
    line = format_verdict(Unchecked(reason, detail))
    assert line.startswith(f"-1:{reason}".encode()) and line.count(b"\n") == 1
    assert b"\x00" not in line and b"\r" not in line


@settings(max_examples=300)
@given(st.binary(max_size=2000), st.lists(st.integers(1, 50), max_size=60))
def test_any_split_gives_same_events(data: bytes, cuts: list[int]) -> None:
    """Random bytes never crash the parser, and splitting never changes the events."""
    chunks = []
    i = 0
    for n in cuts:
        chunks.append(data[i : i + n])
        i += n
    chunks.append(data[i:])
    assert events(data, [c for c in chunks if c]) == events(data)


def test_unknown_command_case_sensitive() -> None:
    assert events(b"PING \n") == [BadRequest(Reason.PROTOCOL,
                                             "not an absolute path or a known command")]
    assert protocol.format_line("PONG") == b"PONG\n"
