"""Lenient readings of malformed encodings (issue 23): an encoded word, a base64
or quoted-printable body, a uuencode line that is malformed is read strictly and also the way mail
clients read it (bad characters skipped, the valid prefix decoded); both
readings are checked."""

from __future__ import annotations

import base64
import binascii

from scand.config import Config
from scand.content import transfer
from scand.content.params import decode_words
from tests.content.evasion_cases import EICAR, mixed
from tests.content.readings import qp_stray, uu_stray
from tests.content.test_limits import FOUND, NO_POLICY, reply

WORD = "=?UTF-8?B?c2V0dXAuZXhlX?="  # one character too long; its valid prefix: setup.exe


def test_an_encoded_word_is_read_leniently_too() -> None:
    assert decode_words(WORD) == WORD  # strict: not a word
    assert decode_words(WORD, lenient=True) == "setup.exe"


def test_a_malformed_encoded_name_is_banned() -> None:
    message = mixed(f'Content-Type: application/octet-stream; name="{WORD}"\n'
                    "Content-Transfer-Encoding: base64", base64.encodebytes(b"MZ" + b"\0" * 64))
    assert reply(message, Config()).startswith(b"1:Banned")


def test_a_base64_body_with_junk_is_read_by_its_valid_characters() -> None:
    raw = base64.b64encode(EICAR)
    junky = b"".join(raw[i:i + 4] + b"!~" for i in range(0, len(raw), 4)) + b"\n"
    message = mixed("Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64",
                    junky)
    assert reply(message, NO_POLICY) == FOUND


def test_a_uuencode_line_with_stray_characters_is_read_leniently() -> None:
    message = mixed("Content-Type: text/plain", uu_stray(EICAR))
    assert reply(message, NO_POLICY) == FOUND


def test_quoted_printable_with_stray_equals_is_read_both_ways() -> None:
    body = qp_stray(EICAR)
    assert not transfer.canonical_qp(body)
    strict, *lenient = transfer.qp_readings(body)
    assert strict == body  # the stdlib keeps an "=" that starts no escape
    assert [r.rstrip(b"\n") for r in lenient] == [EICAR]  # clients that skip it
    both = b"a=3Db=\nc=ZZ=  \nd=4"
    assert transfer.qp_readings(both) == [b"a=bc=ZZ=  \nd=4", b"a=bc=ZZd=4", b"a=bcZZd4"]
    assert transfer.qp_readings(b"a=3Db=\nc\n") == [b"a=bc\n"]  # canonical: one reading


def test_eicar_only_the_lenient_quoted_printable_reading_shows_is_found() -> None:
    message = mixed("Content-Type: application/octet-stream\n"
                    "Content-Transfer-Encoding: quoted-printable", qp_stray(EICAR))
    assert reply(message, NO_POLICY) == FOUND


def test_a_name_only_the_lenient_quoted_printable_reading_shows_is_banned() -> None:
    block = b"be=gin 644 setup.exe\n" + binascii.b2a_uu(b"MZ" + b"\0" * 40) + b"`\nend\n"
    message = mixed("Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable",
                    block)
    assert reply(message, Config()).startswith(b"1:Banned")
    assert reply(mixed("Content-Type: text/plain", block), Config()) == b"0\n"  # strict: text

