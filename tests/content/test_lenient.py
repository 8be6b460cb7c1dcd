"""Lenient readings of malformed encodings (issue 23): an encoded word, a base64
body, a uuencode line that is malformed is read strictly and also the way mail
clients read it (bad characters skipped, the valid prefix decoded); both
readings are checked."""

from __future__ import annotations

import base64

from scand.config import Config
from scand.content.headers import decode_words
from tests.content.evasion_cases import EICAR, mixed
from tests.content.readings import uu_stray
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
