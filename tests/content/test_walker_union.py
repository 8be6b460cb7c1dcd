"""Unit tests of the walker's union rule that the evasion corpus does not pin alone:
message/partial reassembly, the dedupe of readings, and what the names-only walk
beside clamd hands to the engine."""

from __future__ import annotations

import base64

from scand import config as cm
from scand.config import Config
from scand.content import Part, walk
from scand.engines.builtin import EICAR, BuiltinEngine
from scand.engines.signatures import HashDB
from scand.events import Unchecked
from scand.protocol import format_verdict
from scand.worker.scanner import Scanner

NO_POLICY = cm.override(Config(), "policy", enabled=False)
HEAD = b"From: a@example.org\nTo: b@example.net\nMIME-Version: 1.0\n"
INNER = (b"From: x@example.org\nSubject: inner\nMIME-Version: 1.0\n"
         b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
         + base64.encodebytes(EICAR))


def reply(message: bytes, config: Config = NO_POLICY) -> bytes:
    return format_verdict(Scanner(BuiltinEngine(HashDB()), config).scan_stream(message).verdict)


def fragments(*numbers: int, total: int = 2) -> bytes:
    cut = [INNER[:70], INNER[70:]]
    body = b"".join(
        b'--Q\nContent-Type: message/partial; id="frag@example.org"; number=%d; total=%d\n\n'
        % (n, total) + cut[n - 1] + b"\n" for n in numbers)
    return HEAD + b"Content-Type: multipart/mixed; boundary=Q\n\n" + body + b"--Q--\n"


def test_partial_fragments_are_reassembled_and_scanned() -> None:
    assert reply(fragments(1, 2)) == b"1:Eicar-Test-Signature\n"
    assert reply(fragments(2, 1)) == b"1:Eicar-Test-Signature\n"  # any order


def test_an_incomplete_partial_set_is_never_clean() -> None:
    assert reply(fragments(1)).startswith(b"-1:unreadable message/partial")
    assert reply(fragments(1, 2, total=3)).startswith(b"-1:unreadable")


def test_partial_is_banned_by_default() -> None:
    assert reply(fragments(1, 2), Config()) == b"1:Banned.MimeType.message/partial\n"


def test_a_second_reading_does_not_rescan_the_same_bytes() -> None:
    """A bare CR in the header block makes a second reading (CR as a line end) that
    decodes to the same attachment: its bytes are scanned once, its names met twice."""
    msg = (HEAD + b"Subject: a\rb\nContent-Type: multipart/mixed; boundary=A\n\n"
           b"--A\nContent-Type: application/octet-stream; name=a.bin\n"
           b"Content-Transfer-Encoding: base64\n\n"
           + base64.encodebytes(b"x" * 300).replace(b"\n", b"\r", 1) + b"--A--\n")
    items = [i for i in walk(msg, "", Config().content) if isinstance(i, Part) and i.depth]
    named = [i for i in items if i.names == ("a.bin",)]
    assert len(named) == 2  # both readings: the name is met twice
    assert [len(i.data) for i in named] == [300, 0]  # the bytes are scanned once


def test_names_only_walk_hands_alternative_readings_to_the_engine() -> None:
    """Beside clamd, a part reached only by a lenient reading (here: a header line
    with a space before its colon hides the CTE from strict readers) keeps its bytes
    and is marked alt; an ordinary attachment does not."""
    odd = (HEAD + b"X-Mailer : x\nContent-Type: application/octet-stream\n"
           b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(EICAR))
    alt = [i for i in walk(odd, "", Config().content, keep_data=False)
           if isinstance(i, Part) and i.alt and i.data]
    assert any(EICAR in p.data for p in alt)
    plain = (HEAD + b"Content-Type: application/octet-stream\n"
             b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(EICAR))
    parts = [i for i in walk(plain, "", Config().content, keep_data=False)
             if isinstance(i, Part) and i.depth > 0]
    assert parts and not any(p.alt or p.data for p in parts)


def test_names_only_walk_flags_members_over_the_engine_limit() -> None:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.txt", b"a" * 5000)
    items = list(walk(buf.getvalue(), "x.zip", Config().content, keep_data=False,
                      engine_max=4096))
    assert any(isinstance(i, Unchecked) and i.reason == "too-large" for i in items)
    items = list(walk(buf.getvalue(), "x.zip", Config().content, keep_data=False,
                      engine_max=8192))
    assert not any(isinstance(i, Unchecked) for i in items)


def test_no_regex_backtracks_on_hostile_headers_or_uris() -> None:
    """Inputs that made two earlier patterns backtrack exponentially (found by the
    differential fuzzer): each must now be walked at once (it never ended before)."""
    hostile = [
        HEAD + b"Content-Type: text/plain\n" + b"X-A: " + b" " * 40 + b"\n \t\x00\n\n",
        HEAD + b"X-A:" + b"\n a" * 2000 + b"\n\x00\n\nbody",
        HEAD + b"Content-Type: text/html\n\n<a href=\"data:x;" + b"a" * 60 + b"!\">",
        HEAD + b"Content-Type: text/html\n\n<a href=\"data:" + b";a=b" * 2000 + b"!\">",
    ]
    for message in hostile:
        assert reply(message) in (b"0\n", b"-1:unreadable multipart/mixed without parts at input\n")


def _yenc(payload: bytes, *, size: int | None = None, end: bool = True) -> bytes:
    encoded = bytes((c + 42) % 256 for c in payload).replace(b"=", b"==")
    begin = b"=ybegin line=128 size=%d name=x.bin\n" % (len(payload) if size is None else size)
    return begin + encoded + (b"\n=yend size=%d\n" % len(payload) if end else b"\n")


def test_cut_off_encodings_are_never_clean() -> None:
    """What arrived is scanned, but a block, fork, image file or zip member that
    ends early was not read whole: -1:unreadable, never 0."""
    text = HEAD + b"Content-Type: text/plain\n\nhello\n"
    assert reply(text + _yenc(b"harmless bytes")) == b"0\n"
    assert reply(text + _yenc(b"harmless bytes", end=False)).startswith(b"-1:unreadable")
    assert reply(text + _yenc(b"harmless bytes", size=999)).startswith(b"-1:unreadable")
    assert reply(text + _yenc(EICAR, end=False)) == b"1:Eicar-Test-Signature\n"


def test_a_truncated_stored_zip_member_is_never_clean() -> None:
    import io
    import zipfile

    from scand.content import zipscan
    from scand.content.parts import Budget

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("a.txt", b"x" * 1000)
    data = buf.getvalue()
    entry = zipscan.local_at(data, 0)
    assert entry is not None
    assert zipscan.read_local(data, entry, Budget(Config().content), "t") == b"x" * 1000
    cut = data[: entry.data_start + 500]
    try:
        zipscan.read_local(cut, entry, Budget(Config().content), "t")
    except zipscan.BadMember:
        pass
    else:
        raise AssertionError("a cut stored member was read as whole")


def test_the_walk_context_is_derived_never_changed() -> None:
    import dataclasses

    import pytest

    from scand.content.parts import Context

    root = Context.root("msg.eml")
    assert (root.depth, root.where, root.names, root.alt) == (0, "msg.eml", ("msg.eml",), False)
    assert Context.root("").where == "input" and Context.root("").names == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        root.alt = True  # type: ignore[misc]
    odd = root.reading(True)
    assert odd.alt and not root.alt and root.reading(False) is root
    child = odd.child(odd.label("zip:a.exe"), ("a.exe",), in_archive=True)
    assert (child.depth, child.where, child.alt, child.in_archive) == (
        1, "msg.eml>zip:a.exe", True, True)  # alt is inherited unless given
    assert not odd.child("x", alt=False).alt and not child.child("y").in_archive
    part = child.part(b"MZ", message=False)
    assert (part.names, part.depth, part.where, part.in_archive, part.alt) == (
        ("a.exe",), 1, "msg.eml>zip:a.exe", True, True)
