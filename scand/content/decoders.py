"""Byte decoders for the walker, each lenient the way some mail client is lenient.

Where decoders disagree, the walker takes every result (the union):

* base64: the stdlib stops at the first complete pad (``YWI=ZGVm`` -> ``ab``),
  while other clients skip the ``=`` and go on; both readings are returned.
* quoted-printable: a soft line break followed by spaces (``=  \\n``) is a
  soft break to RFC 2045 (trailing whitespace is transport padding), not to
  the stdlib.
* uuencode, yEnc (``=ybegin``) and BinHex 4.0 blocks are found anywhere in a
  text, not only at offset 0, and give their own names.
* ``data:`` URIs (HTML smuggling) are decoded wherever they appear.

Nothing here raises for bad input; undecodable pieces are skipped.
"""

from __future__ import annotations

import binascii
import html
import re
import urllib.parse
from collections.abc import Iterator

from scand.content.parts import LimitHit
from scand.events import Reason

# Characters outside the base64 alphabet (and "="): removed with bytes.translate,
# at C speed and without a piece per match.
_B64_KEEP = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_B64_JUNK = bytes(c for c in range(256) if c not in _B64_KEEP)
_NOT_PAD = re.compile(rb"[^=]+")
_PAD = re.compile(rb"=")
_NOT_PAD_WS = re.compile(rb"[^= \t\r\n]")
_NON_WS = re.compile(rb"[^ \t\r\n\x0b\x0c]")
# A transfer-encoded body: bytes, or a memoryview of the message's buffer (a MIME
# leaf is decoded from the message without copying its encoded text first).
Buffer = bytes | memoryview
# canonical() checks the alphabet this much of a body at a time (bytes.translate
# wants bytes: one window is copied, not the body).
CHECK_WINDOW = 64 * 1024
# Regex substitutions over a body are made this much at a time (cut after a line
# end): re.sub keeps a piece per match until it joins them.
SUB_WINDOW = 64 * 1024
_B64_LINE = re.compile(rb"^[A-Za-z0-9+/]{16,}={0,2}\r?$", re.M)
_LINE = re.compile(rb"[^\r\n]+")
_QP_SOFT = re.compile(rb"=[ \t]+(\r?\n)")
_UU_BEGIN = re.compile(rb"(?m)^begin(?:-base64)? [0-7]{1,4} ([^\r\n]+?)\r?$")
_UU_END = re.compile(rb"(?m)^end\r?$")
_Y_BEGIN = re.compile(rb"(?m)^=ybegin (.*?)\r?$")
_Y_NAME = re.compile(rb"name=(.*)$")
_Y_END = re.compile(rb"(?m)^=yend")
_Y_SIZE = re.compile(rb"(?:^|\s)size=(\d{1,12})")
_BINHEX = b"(This file must be converted with BinHex"
_DATA_URI = re.compile(
    rb"""data:([\w.+/-]*)((?:;(?!base64,)[\w.+-]+(?:=[\w.+"-]*)?)*)(;base64)?,"""
    rb"""([A-Za-z0-9+/=%\s._~!$&'()*,;:@-]+)""",
    re.I)
_DOWNLOAD = re.compile(rb"""download\s*=\s*["']?([^"'>\s]+)""", re.I)
# A data: URI shorter than this holds no executable worth a scan.
MIN_DATA_URI = 16


def base64_readings(body: Buffer, canonical_text: bool = False) -> list[bytes]:
    """The stdlib's reading, plus the ``=``-skipping readings when pads come early.
    A canonical body is decoded straight from ``body`` (a view: no copy of it);
    ``canonical_text``: the caller knows it is (:func:`canonical`: no pad before
    the end), so it is not searched for one again."""
    try:
        first = binascii.a2b_base64(body)
    except (binascii.Error, ValueError):
        first = _b64(bytes(body).translate(None, _B64_JUNK))  # bad padding at the end
    out = [first]
    pad = None if canonical_text else _PAD.search(body)
    if pad is None or not _NOT_PAD_WS.search(body, pad.start()):  # no pad before the end
        if not first and _NON_WS.search(body):
            out.append(_b64_lines(body))
        return [o for o in out if o] or [b""]
    compact = bytes(body).translate(None, _B64_JUNK)
    # Pads in mid-stream: decode each padded segment on its own, and all of it joined.
    each = bytearray()
    for m in _NOT_PAD.finditer(compact):
        each += _b64(m.group())
    out.append(bytes(each))
    del each
    out.append(_b64(compact.replace(b"=", b"")))
    del compact
    out.append(_b64_lines(body))
    return unique(out)


def _b64(text: bytes) -> bytes:
    text = text[: len(text) - len(text) % 4] if len(text) % 4 == 1 else text
    try:
        return binascii.a2b_base64(text + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return b""


def _b64_lines(body: Buffer) -> bytes:
    out = bytearray()
    for m in _LINE.finditer(body):
        out += _b64(m.group().translate(None, _B64_JUNK))
    return bytes(out)


# Base64 as every decoder reads it alike: the alphabet and white space, padding
# only at the end; and quoted-printable whose every "=" starts an escape or a
# soft line break. Anything else is read leniently, in ways an engine's own
# decoder may not share: those readings are handed to it (Part.alt).
_B64_ALPHABET_WS = _B64_KEEP[:-1] + b" \t\r\n\x0b\x0c"
_QP_ODD = re.compile(rb"=(?![0-9A-Fa-f]{2}|\r?\n)")


def canonical(cte: str, body: Buffer) -> bool:
    """True when ``body`` is ``cte`` text that decoders agree on (see above)."""
    if cte == "base64":  # bytes.translate: no regex over every attachment
        core, pads = _b64_core(body)
        return pads <= 2 and not any(
            bytes(body[i : min(i + CHECK_WINDOW, core)]).translate(None, _B64_ALPHABET_WS)
            for i in range(0, core, CHECK_WINDOW))
    if cte == "quoted-printable":
        return _QP_ODD.search(body) is None
    return True


def _b64_core(body: Buffer) -> tuple[int, int]:
    """(length of ``body.rstrip(b"= \\t\\r\\n")``, the ``=`` after it), read from the
    end a little at a time (no copy of the body)."""
    end = len(body)
    pads = 0
    while end > 0:
        chunk = bytes(body[max(0, end - 256) : end])
        kept = chunk.rstrip(b"= \t\r\n")
        pads += chunk.count(b"=", len(kept))
        if kept:
            return end - len(chunk) + len(kept), pads
        end -= len(chunk)
    return 0, pads


def sub_by_lines(pattern: re.Pattern[bytes], repl: bytes, data: bytes) -> bytes:
    """``pattern.sub(repl, data)`` for a pattern that never spans a line end, made
    window by window: memory for the pieces of one window, not of the whole."""
    out = bytearray()
    pos = 0
    while pos < len(data):
        cut = data.find(b"\n", pos + SUB_WINDOW)
        end = len(data) if cut < 0 else cut + 1
        out += pattern.sub(repl, data[pos:end])
        pos = end
    return bytes(out)


def looks_base64(body: Buffer) -> bool:
    """Undeclared base64: the first lines are all base64 alphabet."""
    head = bytes(body[:4096]).strip()
    if len(head) < 64:
        return False
    lines = head.splitlines()[:8]
    return all(_B64_LINE.match(line) for line in lines if line.strip())


def qp_readings(body: Buffer) -> list[bytes]:
    out = [binascii.a2b_qp(body)]
    if _QP_SOFT.search(body):
        out.append(binascii.a2b_qp(sub_by_lines(_QP_SOFT, b"=\\1", bytes(body))))
    return unique(out)


def unique(items: list[bytes]) -> list[bytes]:
    """``items`` without repeats, in order (readings that decode alike are one)."""
    seen: list[bytes] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


# -- uuencode -------------------------------------------------------------------

def has_uuencode(data: bytes) -> bool:
    """A ``begin`` line: found with bytes.find (a multi-line regex over a big text
    costs more than the rest of the walk)."""
    pos = 0 if data.startswith(b"begin") else data.find(b"\nbegin")
    while pos >= 0:
        line_end = data.find(b"\n", pos + 1)
        if _UU_BEGIN.match(data, pos + (data[pos:pos + 1] == b"\n"),
                           len(data) if line_end < 0 else line_end):
            return True
        pos = data.find(b"\nbegin", pos + 1)
    return False


_UU_BAD = bytes(c for c in range(256) if not 32 <= c <= 96)


def _uu_line(line: bytes) -> bytes:
    try:
        return binascii.a2b_uu(line)
    except binascii.Error:
        # Some encoders pad wrongly, some lines carry stray characters: decode only
        # the bytes the length char announces, the characters outside the uuencode
        # alphabet skipped (the lenient reading clients take).
        if not line:
            return b""
        line = line[:1] + line[1:].translate(None, _UU_BAD)
        n = (((line[0] - 32) & 63) * 4 + 5) // 3
        try:
            return binascii.a2b_uu(line[:n])
        except binascii.Error:
            return b""


def _block_ends(data: bytes, begins: list[re.Match[bytes]], end_line: re.Pattern[bytes]
                ) -> Iterator[tuple[re.Match[bytes], int, bool]]:
    """(begin, end of its body, ended) for each begin marker: a block runs to its
    end line or to the next begin marker, whichever comes first. One pass over
    ``data`` however many markers there are (a search per marker for an end line
    that is not there would cost the square of the text)."""
    next_end: re.Match[bytes] | None = None
    searched = -1  # end lines searched from here on: none before next_end
    for i, begin in enumerate(begins):
        if begin.end() > searched and (next_end is None or next_end.start() < begin.end()):
            next_end = end_line.search(data, begin.end())
            searched = len(data) if next_end is None else next_end.start()
        stop = begins[i + 1].start() if i + 1 < len(begins) else len(data)
        if next_end is not None and begin.end() <= next_end.start() < stop:
            yield begin, next_end.start(), True
        else:
            yield begin, stop, False


def uudecode_blocks(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) for each ``begin <mode> <name>`` ... ``end`` block."""
    begins = list(_UU_BEGIN.finditer(data))
    for begin, stop, _ended in _block_ends(data, begins, _UU_END):
        name = begin.group(1).decode("utf-8", "replace").strip()
        body = data[begin.end() : stop]
        if begin.group(0).startswith(b"begin-base64"):
            yield name, _b64_lines(body.split(b"\n====", 1)[0])
            continue
        out = bytearray()
        for line in body.splitlines():
            line = line.rstrip(b"\r")
            if line.strip() == b"`":
                break
            if line:  # binascii decodes an empty line as 32 zero bytes
                out += _uu_line(line)
        yield name, bytes(out)


# -- yEnc -------------------------------------------------------------------------

_YENC_TABLE = bytes((i - 42) % 256 for i in range(256))


def has_yenc(data: bytes) -> bool:
    return b"=ybegin" in data


def yenc_blocks(data: bytes) -> Iterator[tuple[str, bytes, bool]]:
    """(name, bytes, complete) for each ``=ybegin`` ... ``=yend`` block. Not complete:
    no ``=yend``, fewer bytes than ``size=`` says, or one part of a multi-part post
    (a fragment cannot be judged alone)."""
    begins = list(_Y_BEGIN.finditer(data))
    for begin, stop, ended in _block_ends(data, begins, _Y_END):
        m = _Y_NAME.search(begin.group(1))
        name = m.group(1).decode("utf-8", "replace").strip() if m else ""
        size = _Y_SIZE.search(begin.group(1))
        body = data[begin.end() : stop]
        out = bytearray()
        for line in body.splitlines():
            if line.startswith(b"=ypart "):
                continue
            pieces = line.split(b"=")
            out += pieces[0].translate(_YENC_TABLE)
            for piece in pieces[1:]:
                if piece:
                    out.append((piece[0] - 64 - 42) % 256)
                    out += piece[1:].translate(_YENC_TABLE)
        complete = (ended and b" part=" not in b" " + begin.group(1)
                    and (size is None or len(out) >= int(size.group(1))))
        yield name, bytes(out), complete


# -- BinHex 4.0 ----------------------------------------------------------------------

_HQX = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_HQX_TO_B64 = bytes.maketrans(_HQX, _B64_ALPHABET)
_HQX_DELETE = bytes(c for c in range(256) if c not in _HQX)


_HQX_LINE = re.compile(rb":[!-\-0-689@A-NP-VX-[`a-fh-mpqr]{40,}\r?$")


def _hqx_start(data: bytes, bare: bool = False) -> int:
    """Where a BinHex 4.0 text starts: its banner, or (``bare``: a part declared or
    sniffed as BinHex, whose encoders may leave the banner out) a leading ``:``
    line of BinHex alphabet; -1 if neither."""
    banner = data.find(_BINHEX)
    if banner >= 0 or not bare:
        return banner
    start = len(data) - len(data.lstrip(b"\r\n\t "))
    end = data.find(b"\n", start)
    return start if _HQX_LINE.match(data, start, len(data) if end < 0 else end) else -1


def has_binhex(data: bytes, bare: bool = False) -> bool:
    return _hqx_start(data, bare) >= 0


def binhex_blocks(data: bytes, bare: bool = False, limit: int | None = None
                  ) -> Iterator[tuple[str, list[bytes]] | None]:
    """(name, [data fork, resource fork]) of each BinHex 4.0 block in ``data`` (None
    for one that does not decode), each block read once from its banner to its
    closing colon. Raises :class:`LimitHit` when a run-length expansion passes
    ``limit`` bytes."""
    start = _hqx_start(data, bare)
    while start >= 0:
        colon = data.find(b":", data.find(b"\n", start) if data.startswith(_BINHEX, start)
                          else start)
        if colon < 0:
            yield None
            return
        end = data.find(b":", colon + 1)
        yield _binhex_text(data[colon + 1 : end if end > 0 else len(data)], limit)
        if end < 0:
            return
        start = data.find(_BINHEX, end + 1)


def binhex_file(data: bytes, bare: bool = False, limit: int | None = None
                ) -> tuple[str, list[bytes]] | None:
    """The first of :func:`binhex_blocks`, or None."""
    return next(binhex_blocks(data, bare, limit), None)


def _binhex_text(text: bytes, limit: int | None) -> tuple[str, list[bytes]] | None:
    # BinHex packs 6-bit groups as base64 does, in another alphabet: translated,
    # the bytes are decoded at C speed (characters outside it are skipped).
    raw = _b64(text.translate(_HQX_TO_B64, _HQX_DELETE))
    out = _unrle90(raw, limit)
    if not out:
        return None
    n = out[0]
    name = bytes(out[1 : 1 + n]).decode("mac_roman", "replace")
    pos = 1 + n + 1 + 4 + 4 + 2
    dlen = int.from_bytes(out[pos : pos + 4], "big")
    rlen = int.from_bytes(out[pos + 4 : pos + 8], "big")
    pos += 8 + 2
    if len(out) < pos + dlen + 2 + rlen:
        return None  # the text ends inside a fork: not decoded, never a partial clean
    forks = [bytes(out[pos : pos + dlen]), bytes(out[pos + dlen + 2 : pos + dlen + 2 + rlen])]
    return name, [f for f in forks if f]


def _unrle90(raw: bytes, limit: int | None = None) -> bytearray:
    """BinHex run-length decoding (0x90 <count>), marker by marker, the output
    charged against ``limit`` as it grows."""
    out = bytearray()
    pos = 0
    while True:
        marker = raw.find(b"\x90", pos)
        out += raw[pos : len(raw) if marker < 0 or marker + 1 >= len(raw) else marker]
        if marker < 0 or marker + 1 >= len(raw):
            return out
        count = raw[marker + 1]
        if count == 0:
            out.append(0x90)
        elif out:
            out += out[-1:] * (count - 1)
        pos = marker + 2
        if limit is not None and len(out) > limit:
            raise LimitHit(Reason.TOO_LARGE, f"binhex run-length output>{limit}")


# -- data: URIs (HTML smuggling) ---------------------------------------------------------

_DATA_WORD = re.compile(rb"(?i)data(?::|&#0*58;?|&#x0*3a;?|&colon;)")


def has_data_uri(data: bytes) -> bool:
    # Cheap substring tests first: this runs over every decoded text and binary.
    if b"ata:" not in data and b"ATA:" not in data and b"&" not in data:
        return False
    return _DATA_WORD.search(data) is not None


def _unescape(data: bytes) -> bytes:
    """HTML character references resolved (``html.unescape``), window by window
    (it keeps a piece per reference). A window ends right before a ``&``, so no
    reference is cut in two."""
    out = bytearray()
    pos = 0
    while pos < len(data):
        end = len(data)
        if end - pos > SUB_WINDOW:
            cut = data.rfind(b"&", pos + 1, pos + SUB_WINDOW)
            if cut < 0:
                cut = data.find(b"&", pos + SUB_WINDOW)
            end = cut if cut > 0 else end
        out += html.unescape(data[pos:end].decode("latin-1")).encode("latin-1", "replace")
        pos = end
    return bytes(out)


def data_uris(data: bytes) -> Iterator[tuple[str, str, bytes]]:
    """(name, declared type, bytes) for each ``data:`` URI; the name from a nearby
    ``download=`` attribute when there is one. HTML character references
    (``data&#58;``) are resolved first, as a browser does."""
    if b"&" in data:
        data = _unescape(data)
    for m in _DATA_URI.finditer(data):
        payload = re.sub(rb"\s+", b"", m.group(4))
        if len(payload) < MIN_DATA_URI:
            continue
        raw = urllib.parse.unquote_to_bytes(payload)
        decoded = _b64(raw.translate(None, _B64_JUNK)) if m.group(3) else raw
        window = data[max(0, m.start() - 512) : m.end() + 512]
        dl = _DOWNLOAD.search(window)
        name = dl.group(1).decode("utf-8", "replace") if dl else ""
        yield name, m.group(1).decode("latin-1").lower(), decoded
