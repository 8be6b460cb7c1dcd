"""The sans-IO milter codec and the message buffer, without sockets."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from scand.events import NeedData
from scand.milter import protocol as mp
from scand.milter.message import MessageBuffer
from scand.milter.session import fill

# What Postfix 3.7 offers with milter_protocol = 6 (all actions, all steps/flags).
POSTFIX_OFFER = mp.Negotiate(6, 0x1FF, 0x1FFFFF)


def pkt(cmd: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + cmd + data


def session_bytes() -> bytes:
    return b"".join([
        pkt(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF)),
        pkt(b"D", b"M{mail_addr}\0a@example.org\0i\0ABC123\0"),
        pkt(b"L", b"Subject\0hello\0"),
        pkt(b"L", b"X-Long\0one\n\ttwo\0"),
        pkt(b"B", b"body line\r\n"),
        pkt(b"E"),
        pkt(b"A"),
        pkt(b"Q"),
    ])


def parse_all(parser: mp.MilterParser, data: bytes, split: int) -> list[mp.MilterEvent]:
    events: list[mp.MilterEvent] = []
    for i in range(0, len(data), split):
        parser.receive_data(data[i : i + split])
        while True:
            ev = parser.next_event()
            if isinstance(ev, NeedData):
                break
            events.append(ev)
            if isinstance(ev, mp.Negotiate):
                parser.negotiate(ev)
    return events


@pytest.mark.parametrize("split", [1, 3, 7, 1000])
def test_events_are_the_same_however_the_bytes_are_split(split: int) -> None:
    events = parse_all(mp.MilterParser(), session_bytes(), split)
    assert events == [
        POSTFIX_OFFER,
        mp.Macros(b"M", {"mail_addr": "a@example.org", "i": "ABC123"}),
        mp.Header("Subject", "hello"),
        mp.Header("X-Long", "one\n\ttwo"),
        mp.Body(b"body line\r\n"),
        mp.EndOfMessage(b""),
        mp.Abort(),
        mp.Quit(),
    ]


def test_negotiation_asks_only_for_offered_flags_and_skips_unneeded_steps() -> None:
    parser = mp.MilterParser()
    reply = parser.negotiate(POSTFIX_OFFER)
    version, actions, protocol = struct.unpack(">III", reply[5:])
    assert reply[4:5] == b"O" and version == 6
    assert actions == mp.F_ADDHDRS | mp.F_QUARANTINE
    for step in (mp.P_NOCONNECT, mp.P_NOHELO, mp.P_NOMAIL, mp.P_NORCPT, mp.P_NOEOH,
                 mp.P_NODATA, mp.P_NOUNKNOWN, mp.P_NR_HDR, mp.P_NR_BODY):
        assert protocol & step
    assert not protocol & (mp.P_NOHDRS | mp.P_NOBODY)
    assert not parser.needs_reply(mp.Header("a", "b"))
    assert not parser.needs_reply(mp.Body(b"x"))
    assert parser.needs_reply(mp.EndOfMessage(b""))
    # an old MTA (version 2, no "no reply" flags): only what it offered, and replies per step
    old = mp.MilterParser()
    reply = old.negotiate(mp.Negotiate(2, 0x3F, 0x7F))
    assert struct.unpack(">III", reply[5:]) == (2, 0x21, 0x7F & mp.WANTED_PROTOCOL)
    assert old.needs_reply(mp.Header("a", "b")) and old.needs_reply(mp.Body(b"x"))


@pytest.mark.parametrize(("data", "why"), [
    (pkt(b"L", b"Subject\0x\0"), "before option negotiation"),
    (struct.pack(">I", 0), "packet length 0"),
    (struct.pack(">I", 10 * 1024 * 1024) + b"B", "packet length"),
    (pkt(b"O", b"short"), "short option negotiation"),
])
def test_protocol_errors(data: bytes, why: str) -> None:
    parser = mp.MilterParser()
    parser.receive_data(data)
    ev = parser.next_event()
    assert isinstance(ev, mp.ProtocolError) and why in ev.detail
    assert isinstance(parser.next_event(), NeedData)  # and nothing after it


def test_unknown_command_after_negotiation_is_an_error() -> None:
    parser = mp.MilterParser()
    parser.negotiate(POSTFIX_OFFER)
    parser.receive_data(pkt(b"Z"))
    assert isinstance(parser.next_event(), mp.ProtocolError)


def test_replies_are_framed_and_sanitized() -> None:
    assert mp.reply_continue() == b"\0\0\0\x01c"
    assert mp.reply_code("554 5.7.1 bad%thing\r\nX") == pkt(b"y", b"554 5.7.1 bad?thing??X\0")
    assert mp.reply_add_header("X-Virus-Status", "Clean") == pkt(b"h", b"X-Virus-Status\0Clean\0")
    assert mp.reply_quarantine("scand: EICAR") == pkt(b"q", b"scand: EICAR\0")
    assert fill("554 5.7.1 {name} {nosuch}", name="X") == "554 5.7.1 X "
    assert fill("451 {", reason="r") == "451 {"


def test_message_buffer_spills_past_the_size_and_cleans_up(tmp_path: Path) -> None:
    buf = MessageBuffer(spill_bytes=100, max_bytes=10_000, spool_dir=str(tmp_path))
    buf.header("Message-ID", "<m@x>")
    buf.header("X-Folded", "a\n\tb")
    assert not buf.spilled
    buf.body(b"x" * 200)
    buf.finish()
    assert buf.spilled and buf.path is not None
    assert os.stat(buf.path).st_mode & 0o777 == 0o600
    text = Path(buf.path).read_bytes()
    assert text == b"Message-ID: <m@x>\r\nX-Folded: a\r\n\tb\r\n\r\n" + b"x" * 200
    assert buf.message_id == "<m@x>" and buf.size == len(text)
    buf.discard()
    assert list(tmp_path.iterdir()) == []


def test_message_buffer_over_the_limit_keeps_nothing(tmp_path: Path) -> None:
    buf = MessageBuffer(spill_bytes=100, max_bytes=1000, spool_dir=str(tmp_path))
    buf.header("Subject", "big")
    for _ in range(20):
        buf.body(b"y" * 100)
    buf.finish()
    assert buf.too_large and buf.size > 1000 and buf.data() == b""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("section", "message"), [
    ({"reject_reply": "250 ok {name}"}, "milter.reject_reply: must start with a 5xx"),
    ({"tempfail_reply": "554 5.7.1 no"}, "milter.tempfail_reply: must start with a 4xx"),
    ({"infected_action": "bounce"}, "milter.infected_action: must be one of"),
    ({"inet_allow": ["bogus"]}, "milter.inet_allow: not a network"),
    ({"socket": "relative/m"}, "milter.socket: must be absolute"),
    ({"inet": "localhost"}, "milter.inet: must be host:port"),
    ({"spill_bytes": 10}, "milter.spill_bytes: must be >= 1024"),
])
def test_milter_config_errors_name_the_key(section: dict[str, object], message: str) -> None:
    from scand import config

    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(")):
        config.from_mapping({"milter": section})
