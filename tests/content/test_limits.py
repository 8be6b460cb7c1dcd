"""Every limit and cut-off of the walker, each with an infected payload past it: the
answer is the signature (the walker read on) or ``-1:<reason>``, never ``0``
(issue 23). The cut-offs that were removed (the header block's 256 KiB, the
number of guessed boundaries, BinHex blocks after the first, zip local headers
after 10,000, boundaries over 200 characters) are pinned by the payload being
found."""

from __future__ import annotations

import base64
import gzip
import io
import zipfile

from scand import config as cm
from scand.config import Config
from scand.engines.builtin import EICAR, BuiltinEngine
from scand.engines.signatures import HashDB
from scand.protocol import format_verdict
from scand.worker.scanner import Scanner
from tests.content.evasion_cases import binhex, raw_zip

NO_POLICY = cm.override(Config(), "policy", enabled=False)
HEAD = b"From: a@example.org\nTo: b@example.net\nMIME-Version: 1.0\n"
FOUND = b"1:Eicar-Test-Signature\n"


def reply(message: bytes, config: Config = NO_POLICY) -> bytes:
    return format_verdict(Scanner(BuiltinEngine(HashDB()), config).scan_stream(message).verdict)


def limits(**content: int) -> Config:
    return cm.override(NO_POLICY, "content", **content)


def attachment(data: bytes = EICAR, name: str = "a.bin") -> bytes:
    return (b"Content-Type: application/octet-stream; name=" + name.encode()
            + b"\nContent-Transfer-Encoding: base64\n\n" + base64.encodebytes(data))


def mixed(*parts: bytes, boundary: bytes = b"B") -> bytes:
    body = b"".join(b"--" + boundary + b"\n" + p + b"\n" for p in parts)
    return (HEAD + b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\n\n'
            + body + b"--" + boundary + b"--\n")


def test_a_300kb_header_line_does_not_hide_the_attachment() -> None:
    """The header block is read to its end (it was cut at 256 KiB and the whole
    message taken for a body without headers: answered 0)."""
    long = b"X-Filler: " + b"a" * 300_000 + b"\n"
    message = mixed(attachment())
    assert reply(message.replace(b"MIME-Version", long + b"MIME-Version", 1)) == FOUND
    assert reply(long + message) == FOUND  # the long line first: still a message


def test_too_many_parts_is_unchecked() -> None:
    parts = [b"Content-Type: text/plain\n\nhello %d\n" % i for i in range(30)]
    message = mixed(*parts, attachment())
    assert reply(message) == FOUND
    assert reply(message, limits(max_parts=10)).startswith(b"-1:too-many-files")


def test_too_deep_is_unchecked() -> None:
    inner = HEAD + attachment()
    for _ in range(6):
        inner = HEAD + b"Content-Type: message/rfc822\n\n" + inner
    assert reply(inner) == FOUND
    assert reply(inner, limits(max_depth=3)).startswith(b"-1:too-deep")


def test_too_large_is_unchecked() -> None:
    message = mixed(attachment(b"\x00" * 8192), attachment(EICAR, "b.bin"))
    assert reply(message) == FOUND
    assert reply(message, limits(max_bytes=4096)).startswith(b"-1:too-large")


def test_an_expansion_past_the_ratio_is_unchecked() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.bin", b"\x00" * (3 << 20) + EICAR)
    assert reply(mixed(attachment(buf.getvalue(), "a.zip"))).startswith(b"-1:too-large ratio")


def test_every_guessed_boundary_is_tried() -> None:
    """A multipart that declares no boundary: every ``--token`` in it is a guess
    (it was the four most frequent only)."""
    decoys = b"".join(b"--decoy%d\n\ntext\n" % i for i in range(6) for _ in range(3))
    body = decoys + b"--rare\n" + attachment() + b"--rare--\n"
    assert reply(HEAD + b"Content-Type: multipart/mixed\n\n" + body) == FOUND


def test_a_boundary_over_200_characters_is_split() -> None:
    assert reply(mixed(attachment(), boundary=b"b" * 300)) == FOUND


def test_binhex_blocks_after_the_first_are_decoded() -> None:
    text = (b"Content-Type: text/plain\n\n" + binhex("clean.txt", b"hello")
            + b"\n" + binhex("data.bin", EICAR))
    assert reply(HEAD + text) == FOUND


def test_zip_local_headers_after_10000_are_read() -> None:
    """A stub full of "PK\\3\\4" before a member the central directory does not list
    (there was a cap of 10,000 local headers, then silence)."""
    listed = raw_zip([(b"clean.txt", b"clean.txt", b"hello", b"")])
    hidden = raw_zip([(b"e.com", b"e.com", EICAR, b"")])
    local = hidden[: hidden.find(b"PK\x01\x02")]
    junk = b"PK\x03\x04" + b"\xff" * 26
    stub = b"MZ" + junk * 20_000
    archive = stub + local + listed  # the end record lists clean.txt only (relative offsets)
    assert reply(mixed(attachment(archive, "a.zip"))) == FOUND
    assert reply(mixed(attachment(b"MZ" + b"\0" * 64 + local + listed, "a.zip"))) == FOUND


def test_a_long_gzip_name_is_read_whole() -> None:
    """The stored name (FNAME) of a gzip is read to its end (it was cut at 1 KiB,
    and with it the suffix the policy looks at)."""
    name = "a" * 2000 + ".exe"
    raw = bytearray(gzip.compress(b"hello", mtime=0))
    raw[3] |= 0x08
    data = bytes(raw[:10]) + name.encode() + b"\0" + bytes(raw[10:])
    assert reply(mixed(attachment(data, "a.gz")), Config()).startswith(b"1:Banned")


def test_thousands_of_names_on_one_part_are_charged_as_parts() -> None:
    """Every name of a part is a policy check: past NAMES_FREE each counts as a part."""
    names = b"".join(b'; name="file%d.txt"' % i for i in range(200))
    part = b"Content-Type: application/octet-stream" + names + attachment()[38:]
    assert reply(mixed(part)) == FOUND
    assert reply(mixed(part), limits(max_parts=100)).startswith(b"-1:too-many-files")
