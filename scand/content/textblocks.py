"""Files encoded inside a text, for the walker: one table of block kinds.

:data:`TEXT_BLOCKS` holds each kind a mail client (or a browser) finds inside a
text part and decodes as a file of its own: uuencode, yEnc (``=ybegin``),
BinHex 4.0 and ``data:`` URIs (HTML smuggling, looked for in parts a browser
renders only). Each entry says how to tell cheaply that a text may hold one
and how to read every block in it; the walker walks each block as a part. A
new kind is one entry plus its cases.

Blocks are found anywhere in a text, not only at offset 0, and give their own
names. Nothing here raises for bad input (a BinHex run-length bomb is a
:class:`~scand.content.parts.LimitHit`); undecodable pieces are skipped or
reported.
"""

from __future__ import annotations

import binascii
import html
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from scand.content.parts import Budget, LimitHit
from scand.content.transfer import B64_JUNK, SUB_WINDOW, b64, b64_lines
from scand.events import Reason, Unchecked

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


def _block_ends(data: bytes, begins: Iterator[re.Match[bytes]], end_line: re.Pattern[bytes]
                ) -> Iterator[tuple[re.Match[bytes], int, bool]]:
    """(begin, end of its body, ended) for each begin marker: a block runs to its
    end line or to the next begin marker, whichever comes first. One pass over
    ``data`` however many markers there are (a search per marker for an end line
    that is not there would cost the square of the text). The markers are read
    one ahead, never listed: a text of begin lines would hold a match object per
    line (many times the text) while the walk reads only up to its part budget."""
    next_end: re.Match[bytes] | None = None
    searched = -1  # end lines searched from here on: none before next_end
    begin = next(begins, None)
    while begin is not None:
        following = next(begins, None)
        if begin.end() > searched and (next_end is None or next_end.start() < begin.end()):
            next_end = end_line.search(data, begin.end())
            searched = len(data) if next_end is None else next_end.start()
        stop = following.start() if following is not None else len(data)
        if next_end is not None and begin.end() <= next_end.start() < stop:
            yield begin, next_end.start(), True
        else:
            yield begin, stop, False
        begin = following


def uudecode_blocks(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) for each ``begin <mode> <name>`` ... ``end`` block."""
    for begin, stop, _ended in _block_ends(data, _UU_BEGIN.finditer(data), _UU_END):
        name = begin.group(1).decode("utf-8", "replace").strip()
        body = data[begin.end() : stop]
        if begin.group(0).startswith(b"begin-base64"):
            yield name, b64_lines(body.split(b"\n====", 1)[0])
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
    for begin, stop, ended in _block_ends(data, _Y_BEGIN.finditer(data), _Y_END):
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
    raw = b64(text.translate(_HQX_TO_B64, _HQX_DELETE))
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


# A character reference as ``html.unescape`` finds one (the stdlib's pattern, as one
# group: ``split`` keeps the references). Its replacement depends only on its own
# text, so each distinct one is resolved once.
_CHARREF = re.compile(r"(&(?:#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?))")
_CHARREF_KEPT = 4096  # resolved references remembered (the cache is emptied past this)


class _Refs(dict[str, str]):
    def __missing__(self, ref: str) -> str:
        text = self[ref] = html.unescape(ref)
        return text


_REFS = _Refs()


def _html_unescape(text: str) -> str:
    """``html.unescape(text)`` without a Python call per reference (a text of
    500,000 references otherwise costs a full resolution per reference): the
    text split at its references, each looked up in a cache."""
    if "&" not in text:
        return text
    if len(_REFS) > _CHARREF_KEPT:
        _REFS.clear()
    pieces = _CHARREF.split(text)
    pieces[1::2] = map(_REFS.__getitem__, pieces[1::2])
    return "".join(pieces)


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
        out += _html_unescape(data[pos:end].decode("latin-1")).encode("latin-1", "replace")
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
        decoded = b64(raw.translate(None, B64_JUNK)) if m.group(3) else raw
        window = data[max(0, m.start() - 512) : m.end() + 512]
        dl = _DOWNLOAD.search(window)
        name = dl.group(1).decode("utf-8", "replace") if dl else ""
        yield name, m.group(1).decode("latin-1").lower(), decoded



# -- the table ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Block:
    """One file found in a text: ``label`` goes on the trail (``uu:a.exe``)."""

    label: str
    data: bytes
    names: tuple[str, ...] = ()
    mime: str = ""


Found = Iterator[Block | Unchecked]


@dataclass(frozen=True, slots=True)
class TextBlock:
    """A kind of file encoded inside a text. ``present``: a cheap test that a text
    may hold one; ``read(text, budget, where)``: every block, or an ``Unchecked``
    for one that cannot be read whole; ``html_only``: looked for only in parts a
    browser renders."""

    kind: str
    present: Callable[[bytes], bool]
    read: Callable[[bytes, Budget, str], Found]
    html_only: bool = False


def _read_uu(data: bytes, budget: Budget, where: str) -> Found:
    for name, decoded in uudecode_blocks(data):
        yield Block(f"uu:{name}", decoded, (name,))


def _read_yenc(data: bytes, budget: Budget, where: str) -> Found:
    for name, decoded, complete in yenc_blocks(data):
        yield Block(f"yenc:{name}", decoded, (name,) if name else ())
        if not complete:  # what arrived was scanned; the rest was not
            yield Unchecked(Reason.UNREADABLE, f"incomplete yEnc block at {where}")


def _read_binhex(data: bytes, budget: Budget, where: str) -> Found:
    for found in binhex_blocks(data, limit=budget.room()):
        if found is None:
            yield Unchecked(Reason.UNREADABLE, f"binhex at {where}: not decoded")
            continue
        for fork in found[1]:
            yield Block(f"binhex:{found[0]}", fork, (found[0],))


def _read_data_uris(data: bytes, budget: Budget, where: str) -> Found:
    for name, mime, decoded in data_uris(data):
        yield Block(f"data:{mime}", decoded, (name,) if name else (), mime)


TEXT_BLOCKS: tuple[TextBlock, ...] = (
    TextBlock("uuencode", has_uuencode, _read_uu),
    TextBlock("yenc", has_yenc, _read_yenc),
    TextBlock("binhex", has_binhex, _read_binhex),
    TextBlock("data-uri", has_data_uri, _read_data_uris, html_only=True),
)


def has_blocks(data: bytes) -> bool:
    """A text holds a block of a kind looked for in every text (not only HTML)."""
    return any(kind.present(data) for kind in TEXT_BLOCKS if not kind.html_only)
