"""The walk copies no body (issue 23, zero-copy): bodies and parts are offsets into
the message, a part is decoded from a view of it. Measured with tracemalloc, so
the figures are exact (bench/walkmem.py has the ladder and the process peak)."""

from __future__ import annotations

import base64
import os
import tracemalloc
from collections.abc import Callable

import pytest

from scand.config import ContentConfig
from scand.content.parts import Part
from scand.content.walker import walk

PLAIN = b"From: a@example.com\nTo: b@example.com\nSubject: t\nMIME-Version: 1.0\n"


def _attachment(size: int) -> bytes:
    return (PLAIN + b'Content-Type: multipart/mixed; boundary="B"\n\n--B\n'
            b"Content-Type: text/plain\n\nhello\n--B\n"
            b'Content-Type: application/octet-stream; name="a.bin"\n'
            b"Content-Transfer-Encoding: base64\n\n"
            + base64.encodebytes(os.urandom(size)) + b"--B--\n")


def _many_headers() -> bytes:
    return PLAIN + b"".join(b"X-H%d: value %d\n" % (i, i) for i in range(60_000)) + b"\nb\n"


def _bare_cr() -> bytes:
    part = b"--r\rContent-Type: text/plain\r\rhello\r"
    return (PLAIN.replace(b"\n", b"\r") + b'Content-Type: multipart/mixed; boundary="r"\r\r'
            + part * 20_000 + b"--r--\r")


def _entities() -> bytes:
    return PLAIN + b"Content-Type: text/html\n\n<html>" + b"data&#58;&amp;data&colon;" * 60_000


def _uu_begins() -> bytes:
    return PLAIN + b"Content-Type: text/plain\n\nbegin 644 a.bin\n" + b"begin 644 b.bin\n" * 60_000


def _escaped_quote() -> bytes:
    return (PLAIN + b'Content-Type: application/octet-stream; name="' + b'\\"a; b=' * 100_000
            + b"\n\nbody\n")


def _peak(data: bytes) -> tuple[float, list[Part]]:
    """The walk's tracemalloc peak over the message size (the message not counted)."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    try:
        parts = [i for i in walk(data, "", ContentConfig()) if isinstance(i, Part)]
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak / len(data), parts


def test_an_attachment_costs_its_decoded_bytes_not_copies_of_the_message() -> None:
    data = _attachment(3 << 20)
    ratio, parts = _peak(data)
    assert any(p.names == ("a.bin",) and len(p.data) == 3 << 20 for p in parts)
    # The decoded attachment is 0.75 of the message; before: 5.7 (body, parts,
    # the part's body and a stripped copy for the canonical check).
    assert ratio < 1.0


@pytest.mark.parametrize("make, bound", [(_many_headers, 1.5), (_bare_cr, 3.0),
                                         (_entities, 3.0), (_uu_begins, 4.0),
                                         (_escaped_quote, 6.0)])
def test_header_and_text_bombs_cost_a_few_times_the_message(
        make: Callable[[], bytes], bound: float) -> None:
    # Before: 13x (a field per header), 9.7x (a list of every line), 8.4x (a piece
    # per character reference), 10x (a match object per uuencode begin line),
    # 14x (a piece per backslash escape in one quoted value).
    ratio, _parts = _peak(make())
    assert ratio < bound
