"""MIME helpers for the walker: children, names, declared types, uuencode.

Names are where worms hide what they are, so every place a mail client would
take a name from is read, and decoded the way a mail client would decode it:
``Content-Disposition: filename=`` and ``Content-Type: name=`` (RFC 2231
continuations and charsets), RFC 2047 encoded words (also where the RFC does
not allow them, because clients decode them anyway), and uuencode ``begin``
lines. Parsing uses the stdlib's ``compat32`` policy: lenient, and about 15x
faster than the modern policy on a 10,000-part message (measured: 0.09 s vs 1.4 s).
"""

from __future__ import annotations

import binascii
import email.header
import email.message
import email.utils
import re
from collections.abc import Iterator

# "begin 644 name" (and the "begin-base64" variant is not uuencode: skipped).
_UU_BEGIN = re.compile(rb"(?m)^begin [0-7]{3,4} ([^\r\n]+?)\r?$")
_UU_END = re.compile(rb"(?m)^end\r?$")
# Uuencode blocks bigger than this are cut off (the walker's byte budget still counts).
MAX_UU_LINES = 1_000_000


def children(msg: email.message.Message) -> list[email.message.Message]:
    """The sub-parts of a multipart, or the message itself when it is a single part."""
    if msg.is_multipart():
        payload = msg.get_payload()
        return [p for p in payload if isinstance(p, email.message.Message)]
    return [msg]


def decode_words(value: str) -> str:
    """RFC 2047 encoded words -> text; undecodable bytes are replaced, never raised."""
    if "=?" not in value:
        return value
    try:
        chunks = email.header.decode_header(value)
    except (ValueError, LookupError, AssertionError):
        return value
    out = []
    for text, charset in chunks:
        if isinstance(text, bytes):
            try:
                out.append(text.decode(charset or "ascii", "replace"))
            except LookupError:
                out.append(text.decode("latin-1"))
        else:
            out.append(text)
    return "".join(out)


def _param(msg: email.message.Message, param: str, header: str) -> str | None:
    try:
        value = msg.get_param(param, header=header)
    except (ValueError, LookupError, IndexError):
        return None
    if value is None:
        return None
    if isinstance(value, tuple):  # RFC 2231: (charset, language, value)
        try:
            return str(email.utils.collapse_rfc2231_value(value, errors="replace"))
        except (LookupError, ValueError):
            return str(value[2])
    return str(value)


def part_names(msg: email.message.Message) -> tuple[str, ...]:
    """Every name a client could show for this part, decoded, without duplicates."""
    names: list[str] = []
    for param, header in (("filename", "content-disposition"), ("name", "content-type")):
        raw = _param(msg, param, header)
        if raw:
            for candidate in (decode_words(raw.strip()), raw.strip()):
                if candidate and candidate not in names:
                    names.append(candidate)
    return tuple(names)


def declared_type(msg: email.message.Message) -> str:
    """The Content-Type as declared (lower case, no parameters); "" if absent."""
    raw = msg.get("Content-Type", "")
    return str(raw).split(";", 1)[0].strip().lower()


def payload(msg: email.message.Message) -> bytes:
    """The decoded body of a leaf part (base64, quoted-printable, x-uuencode)."""
    cte = str(msg.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte in ("x-uuencode", "uuencode", "x-uue", "uue"):
        # The stdlib decodes a missing "end" line as data; ours stops at the "`" line.
        raw = msg.get_payload(decode=False)
        if isinstance(raw, str):
            blocks = list(uudecode_blocks(raw.encode("latin-1", "replace")))
            if blocks:
                return blocks[0][1]
    try:
        data = msg.get_payload(decode=True)
    except (ValueError, LookupError, binascii.Error, AssertionError):
        raw = msg.get_payload(decode=False)
        data = raw.encode("latin-1", "replace") if isinstance(raw, str) else b""
    return data if isinstance(data, bytes) else b""


def has_uuencode(data: bytes) -> bool:
    return b"begin " in data and _UU_BEGIN.search(data) is not None


def _uu_line(line: bytes) -> bytes:
    try:
        return binascii.a2b_uu(line)
    except binascii.Error:
        # Some encoders pad wrongly; decode only the bytes the length char announces.
        if not line:
            return b""
        n = (((line[0] - 32) & 63) * 4 + 5) // 3
        try:
            return binascii.a2b_uu(line[:n])
        except binascii.Error:
            return b""


def uudecode_blocks(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) for each ``begin <mode> <name>`` ... ``end`` block."""
    for begin in _UU_BEGIN.finditer(data):
        name = begin.group(1).decode("utf-8", "replace").strip()
        end = _UU_END.search(data, begin.end())
        body = data[begin.end() : end.start() if end else len(data)]
        out = bytearray()
        for i, line in enumerate(body.splitlines()):
            line = line.rstrip(b"\r")
            if i >= MAX_UU_LINES or line.strip() == b"`":
                break
            if line:  # binascii decodes an empty line as 32 zero bytes
                out += _uu_line(line)
        yield name, bytes(out)
