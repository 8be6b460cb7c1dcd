"""The walker's fast paths for well-formed mail (issue 23: the common case no dearer
than before the union of readings) decide exactly what the slow checks decide."""

from __future__ import annotations

import base64
import binascii
import html
import random
import re

import pytest

from scand.content import params, textblocks, transfer
from scand.content.headers import blank_line
from scand.content.parts import Slice


def test_base64_canonical_from_the_decoded_length_agrees_with_the_alphabet_check() -> None:
    """transfer.base64_body tells a canonical body from the stdlib's decoded length
    (no byte-by-byte check): it must say what the alphabet check says, on bodies
    with every kind of flaw at every place."""
    rng = random.Random(23)
    flaws = [b"=", b"==", b"!", b" ", b"\t", b"\x0c", b"*", b"\r", b"\n", b"\r\n", b"A", b"AB",
             b"=A", b"\xff", b"-", b"_"]
    for size in [*range(0, 40), 56, 57, 58, 100, 171, 200, 301]:
        raw = base64.encodebytes(rng.randbytes(size))
        crlf = raw.replace(b"\n", b"\r\n")
        short = base64.b64encode(rng.randbytes(size))
        short = b"\n".join(short[i:i + 64] for i in range(0, len(short), 64)) + b"\n"
        variants = [raw, crlf, raw.rstrip(b"\n"), raw + b"\n\n", short, b"\n" + raw]
        for text in (raw, crlf, short, raw.rstrip(b"\n")):  # the shape is enough
            assert transfer._length_agrees(Slice.of(text), len(binascii.a2b_base64(text)))
        for text in (raw, crlf, short):
            for _ in range(40):
                pos = rng.randrange(len(text) + 1)
                variants.append(text[:pos] + rng.choice(flaws) + text[pos:])
                cut = rng.randrange(len(text) + 1)  # a line end moved, dropped, doubled
                variants.append(text[:cut] + text[cut + 1:])
        for body in variants:
            readings, canon = transfer.base64_body(Slice.of(body))
            assert canon == transfer.canonical_base64(body), body
            assert readings == transfer.base64_readings(body, canon), body
            framed = b"xx" + body + b"yy"  # a slice of a larger buffer
            assert transfer.base64_body(Slice(framed, 2, 2 + len(body)))[1] == canon, body


def test_the_first_empty_line_is_where_the_full_pattern_finds_it() -> None:
    """headers.blank_line looks for "\\n\\r?\\n" (a literal first byte) and widens
    over a CR before it: the same span as a search for "\\r?\\n\\r?\\n"."""
    full = re.compile(rb"\r?\n\r?\n")
    rng = random.Random(23)
    for _ in range(50_000):
        data = bytes(rng.choice(b"\r\na") for _ in range(rng.randrange(0, 12)))
        start = rng.randrange(0, len(data) + 1)
        end = rng.randrange(start, len(data) + 1)
        m = full.search(data, start, end)
        assert blank_line(data, start, end) == (None if m is None else m.span()), data


def test_cached_character_references_read_as_html_unescape_does() -> None:
    rng = random.Random(23)
    alphabet = ["&", "#", "x", "X", "3", "a", ";", "amp", "lt", "colon", " ", "\n", "9", "0",
                "f", "ampxyz", "&#x110000;", "&#0;", "&#128;", "notin", "not", "é"]
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        assert textblocks._html_unescape(text) == html.unescape(text), text


def test_a_quoted_value_unescaped_by_windows_reads_as_one_substitution(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(params, "FOLD_WINDOW", 5)  # windows cut runs of backslashes
    rng = random.Random(2231)
    for _ in range(20_000):
        text = "".join(rng.choice('\\\\\\ab"\n') for _ in range(rng.randint(0, 30)))
        assert params._unescape(text) == re.sub(r"\\(.)", r"\1", text, flags=re.S), text
