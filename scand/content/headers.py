"""Lenient MIME headers: every reading of a header block a mail client might take.

The stdlib parser reads one way and stops at the first surprise (a space
before a colon ends the header block; only the first plain value of the first
header is used). Mail clients read in other ways, and a worm picks the reading
the scanner did not take. So this module reads *all* of them:

* the header block may end at the first empty line, at the first line of
  only whitespace, or at the first line that is not a header (the stdlib's
  reading); each distinct end is one :class:`Reading`;
* ``Name : value`` (space before the colon) is a header; lines without a colon
  are skipped, not the end of the world; folding is undone both ways (keep the
  whitespace, drop it);
* every instance of a header counts (duplicates are a union, not a choice);
* parameters are found wherever ``key=value`` appears, quoted or not, with
  RFC 2231 continuations and charsets, and RFC 2047 words decoded leniently.

Pure stdlib, never raises for bad input. Anything unusual sets
``Headers.odd``: the walker then treats the entity as ambiguous.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field

from scand.content.parts import Slice

# A header line: a field name, optional whitespace, a colon (RFC 5322 allows no
# whitespace there, but clients accept it and so must we).
_FIELD = re.compile(r"^([\x21-\x39\x3b-\x7e]+)([ \t]*):(.*)$", re.S)
_LINE_END = re.compile(rb"\r\n|\n|\r(?!\n)")
_BLANK = re.compile(rb"\r?\n\r?\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
# key=value anywhere in a header value: quoted (possibly unclosed) or a token.
_VALUE_RE = r"""("[^"\\]*+(?:\\.[^"\\]*+)*+"?|[^;\s]*+)"""
_PARAM = re.compile(
    r"""(?:^|[;\s,])([\w!#$%&'+.^`|~-]+(?:\*\d*\*?)?)[ \t]*=[ \t]*""" + _VALUE_RE, re.S)
_VALUE = re.compile(_VALUE_RE, re.S)  # a parameter's value, read again where it starts
_WHERE_BITS = 48  # RFC 2231 sections are packed in ints: number, then offset and a flag
_WHERE_MASK = (1 << _WHERE_BITS) - 1
_SECTION = re.compile(r"^(.*?)\*(\d+)?(\*)?$")
_WORD = re.compile(r"=\?([^?\s]*)\?([bBqQ])\?([^?\s]*)\?=")
_WORD_GAP = re.compile(r"(\?=)\s+(=\?)")
_COMMENT = re.compile(r"\([^()]*\)")
_ESCAPE = re.compile(r"\\(.)", re.S)
_B64_NOT = re.compile(r"[^A-Za-z0-9+/]")
# Headers that name a part, besides the filename/name parameters.
NAME_HEADERS = ("content-name", "x-sun-data-name", "x-attachment-name")
# Header-only names a part may carry (Content-Type and Content-Disposition params).
NAME_PARAMS = ("filename", "name")


def kept_header(name: str) -> bool:
    """The headers a reading keeps: every Content-* (duplicates that disagree make
    an entity odd) and the name headers; the walker reads no others, and a block
    of a million other headers costs no memory per header."""
    return name.startswith("content-") or name in NAME_HEADERS


# The parameters the walker reads: names, boundaries, message/partial's.
USED_PARAMS = frozenset((*NAME_PARAMS, "boundary", "id", "number", "total"))


@dataclass
class Headers:
    """One reading of a header block: (lower-case name, value) pairs in order."""

    fields: list[tuple[str, str]] = field(default_factory=list)
    # Values of folded headers with the line breaks' whitespace dropped too (some
    # readers unfold that way), only where that differs from the RFC unfolding.
    folded: list[tuple[str, str]] = field(default_factory=list)
    odd: bool = False
    _by_name: dict[str, list[str]] | None = None

    def all(self, name: str) -> list[str]:
        if self._by_name is None:
            self._by_name = {}
            for key, value in self.fields:
                self._by_name.setdefault(key, []).append(value)
        return list(self._by_name.get(name, ()))

    def all_both(self, name: str) -> list[str]:
        """Values unfolded both ways (RFC keeps the whitespace; some drop it)."""
        out = self.all(name)
        if self.folded:
            out = list(dict.fromkeys(out + [v for k, v in self.folded if k == name]))
        return out


@dataclass(frozen=True)
class Reading:
    headers: Headers
    body: Slice  # offsets into the entity's buffer: no copy of the body


def _text(raw: bytes) -> str:
    # latin-1 keeps every byte (boundaries with 8-bit bytes round-trip exactly).
    return raw.decode("latin-1")


def parse_block(block: bytes) -> Headers:
    """Parse a header block leniently (see the module docstring)."""
    out = Headers()
    seen: set[tuple[str, str]] = set()
    current: list[str] = []

    def flush() -> None:
        if not current:
            return
        m = _FIELD.match(current[0])
        if m is None:
            out.odd = True
            return
        name = m.group(1).lower()
        if m.group(2):
            out.odd = True
        if not kept_header(name):
            return
        first = m.group(3)
        if len(current) == 1:
            _add(out, seen, name, first.strip())
            return
        kept = "".join([first, *current[1:]]).strip()
        dropped = "".join([first, *(c.lstrip(" \t") for c in current[1:])]).strip()
        _add(out, seen, name, kept)
        if dropped != kept:
            out.folded.append((name, dropped))

    for raw in _lines(block):
        line = _text(raw)
        if line[:1] in (" ", "\t") and current:
            current.append(line)
            continue
        flush()
        current = [line] if line.strip() else []
        if line[:1] in (" ", "\t"):
            out.odd = True  # a continuation with nothing to continue
    flush()
    out.odd = out.odd or _disagree(out.fields)
    return out


def _add(out: Headers, seen: set[tuple[str, str]], name: str, value: str) -> None:
    """A header, unless the same name and value came before (a repeat reads the
    same to every reader: a block of 100,000 copies keeps one)."""
    if (name, value) not in seen:
        seen.add((name, value))
        out.fields.append((name, value))


def _lines(block: bytes) -> Iterator[bytes]:
    """The lines of ``block`` (``_LINE_END.split``, one at a time: no list of them)."""
    pos = 0
    for m in _LINE_END.finditer(block):
        yield block[pos : m.start()]
        pos = m.end()
    yield block[pos:]


def _disagree(fields: list[tuple[str, str]]) -> bool:
    """Duplicate Content-* headers that disagree: readers pick differently."""
    seen: dict[str, str] = {}
    return any(name.startswith("content-") and seen.setdefault(name, value) != value
               for name, value in fields)


# A header block every reader reads alike: header lines (name, colon) and their
# continuations, nothing else. Checked at C speed before the line-by-line look.
_PLAIN_BLOCK = re.compile(  # possessive: no backtracking state kept per line or fold
    rb"(?:[\x21-\x39\x3b-\x7e]++:[^\r\n]*+(?:\r?\n[ \t]++[^\s][^\r\n]*+)*+(?:\r?\n|$))*+")


_PLAIN_FIELD = re.compile(
    rb"^([\x21-\x39\x3b-\x7e]++):([^\r\n]*+(?:\r?\n[ \t][^\r\n]*+)*+)", re.M)
_FOLD_WS = re.compile(rb"\r?\n[ \t]+")
# Folds are removed this much of a value at a time (re.sub keeps a piece per fold).
FOLD_WINDOW = 64 * 1024


def _unfold_dropping(raw: bytes) -> bytes:
    """``raw`` with each line break and the white space after it removed, window by
    window (cut before a line break, so no fold spans two windows)."""
    out = bytearray()
    pos = 0
    while pos < len(raw):
        cut = raw.rfind(b"\n", pos + 1, pos + FOLD_WINDOW) if len(raw) - pos > FOLD_WINDOW else -1
        end = len(raw) if cut < 0 else cut - (raw[cut - 1 : cut] == b"\r")
        if end <= pos:  # one window without a line break: take it whole
            end = len(raw) if cut < 0 else cut + 1
        out += _FOLD_WS.sub(b"", raw[pos:end])
        pos = end
    return bytes(out)


def _parse_plain(block: bytes) -> Headers:
    """:func:`parse_block` for a block :data:`_PLAIN_BLOCK` accepts (no odd lines)."""
    out = Headers()
    seen: set[tuple[str, str]] = set()
    for m in _PLAIN_FIELD.finditer(block):
        name = _text(m.group(1)).lower()
        if not kept_header(name):
            continue
        raw = m.group(2)
        kept = _text(raw.replace(b"\r\n", b"").replace(b"\n", b"")).strip()
        _add(out, seen, name, kept)
        if b"\n" in raw:
            dropped = _text(_unfold_dropping(raw)).strip()
            if dropped != kept:
                out.folded.append((name, dropped))
    out.odd = _disagree(out.fields)
    return out


def _ends(head: bytes) -> list[int]:
    """Where a client could take the header block to end (offsets in ``head``): at
    the first line of only whitespace, and at the first line that is not a header
    (the stdlib's reading). A reader stops at the first such line, so later ones
    are no reading of their own (and looking at them would make the walk cost
    the square of the header block)."""
    blank = non_header = -1
    pos = 0
    for m in _LINE_END.finditer(head):
        line = head[pos : m.start()]
        if not line:
            break
        if not line.strip():
            if blank < 0:
                blank = pos  # a line of only whitespace: some clients stop here
        elif (non_header < 0 and line[:1] not in (b" ", b"\t")
              and _FIELD.match(_text(line)) is None):
            non_header = pos  # not a header: the stdlib's parser stops here
        if blank >= 0 and non_header >= 0:
            break
        pos = m.end()
    return sorted({e for e in (blank, non_header) if e >= 0})


def readings(data: bytes, start: int = 0, end: int | None = None) -> list[Reading]:
    """Every (headers, body) reading of a message or MIME part (``data[start:end]``),
    most standard first. Bodies are :class:`Slice` offsets into ``data``.

    Bare CR line ends (old Macs, and worms) are line ends to some readers: then
    the same entity with CR as LF is read as well."""
    end = len(data) if end is None else end
    out = _readings(data, start, end)
    blank = _BLANK.search(data, start, end)  # the header block: a bare CR in a body is no line end
    if _BARE_CR.search(data, start, end if blank is None else blank.start()):
        lf = data[start:end].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        for reading in _readings(lf, 0, len(lf)):
            reading.headers.odd = True
            out.append(reading)
    return out


def _readings(data: bytes, start: int, end: int) -> list[Reading]:
    if data.startswith(b"From ", start, end):
        nl = data.find(b"\n", start, end)
        start = end if nl < 0 else nl + 1
    if data.startswith((b"\n", b"\r\n"), start, end):
        while start < end and data[start] in b"\r\n":
            start += 1
        return [Reading(Headers(), Slice(data, start, end))]
    # The header block is read to its end however long it is: a cut-off would
    # take the rest of the headers for the body and never see its attachments.
    empty = _BLANK.search(data, start, end)
    head_end, body_start = (empty.start() + 1, empty.end()) if empty else (end, end)
    head = data[start:head_end]
    if _PLAIN_BLOCK.fullmatch(head):  # the common case: one reading, parsed at C speed
        return [Reading(_parse_plain(head), Slice(data, body_start, end))]
    out = [Reading(parse_block(head), Slice(data, body_start, end))]
    for cut in _ends(head):
        if cut >= len(head) - 1:
            continue
        headers = parse_block(head[:cut])
        headers.odd = True
        out.append(Reading(headers, Slice(data, _skip_one_line(data, start + cut, end), end)))
    if len(out) > 1:
        out[0].headers.odd = True
    return out


def _skip_one_line(data: bytes, start: int, end: int) -> int:
    """A body that starts at a whitespace-only line starts after it."""
    m = _LINE_END.search(data, start, end)
    if m is not None and not data[start : m.start()].strip():
        return m.end()
    return start


# -- RFC 2047 -----------------------------------------------------------------

def _charset_decode(raw: bytes, charset: str) -> str:
    try:
        return raw.decode(charset or "utf-8", "replace")
    except LookupError:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")


def _word(m: re.Match[str], bad: str | None, lenient: bool) -> str:
    charset, enc, text = m.group(1).split("*", 1)[0], m.group(2).lower(), m.group(3)
    try:
        if enc == "b":
            if lenient:  # what mail clients do: skip bad characters, decode the valid prefix
                text = _B64_NOT.sub("", text.split("=", 1)[0])
                text = text[: len(text) - len(text) % 4] if len(text) % 4 == 1 else text
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=False)
        else:
            raw = binascii.a2b_qp(text.replace("_", " ").encode("latin-1", "replace"))
    except (binascii.Error, ValueError):
        return m.group(0) if bad is None else bad
    return _charset_decode(raw, charset)


def decode_words(value: str, *, drop_bad: bool = False, lenient: bool = False) -> str:
    """RFC 2047 encoded words -> text, anywhere in ``value``; never raises.

    A word that does not decode is kept as it is, or with ``drop_bad`` left out
    (what a client that shows the rest of the name does). ``lenient``: a base64
    word is read as clients read a malformed one (bad characters skipped, the
    valid prefix decoded: ``c2V0dXAuZXhlX`` is ``setup.exe``)."""
    if "=?" not in value:
        return value
    bad = "" if drop_bad else None
    return _WORD.sub(lambda m: _word(m, bad, lenient), _WORD_GAP.sub(r"\1\2", value))


def _utf8(value: str) -> str:
    """Header bytes were read as latin-1; most 8-bit names are really UTF-8."""
    if value.isascii():
        return value  # the same text: no copy of a long name
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


# -- parameters -----------------------------------------------------------------

def _unquote(raw: str) -> str:
    if raw.startswith('"'):
        inner = raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:]
        return _ESCAPE.sub(r"\1", inner) if "\\" in inner else inner
    return raw


def params(value: str) -> dict[str, list[str]]:
    """Every value of every parameter the walker uses (:data:`USED_PARAMS`) in a
    header value (lower-case keys, RFC 2231 sections joined and decoded).
    Duplicates are all kept."""
    return {key: list(values) for key, values in _params(value)}


@functools.lru_cache(maxsize=1024)
def _params(value: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """:func:`params`, cached: one Content-Type is read for its names, its
    boundaries and its type, in every reading of its entity."""
    out: dict[str, list[str]] = {}
    # RFC 2231 sections by name: one int each, packing the section's number, where
    # its value starts and whether it is extended (see _join_sections). Not a
    # string or tuple per section: a name in 100,000 sections costs a list entry
    # each, and the text is read again when joined.
    sections: dict[str, list[int]] = {}
    for m in _PARAM.finditer(value):
        key, raw = m.group(1).lower(), m.group(2)
        if key.split("*", 1)[0] not in USED_PARAMS:
            continue  # a header of a million parameters keeps none it does not use
        sec = _SECTION.match(key) if "*" in key else None
        if sec is None:
            out.setdefault(key, []).append(_unquote(raw))
            if not raw.startswith('"'):  # an unquoted value with spaces: up to ';'
                stop = value.find(";", m.start(2))
                longer = value[m.start(2) : stop if stop >= 0 else len(value)].strip()
                if longer != raw:
                    out[key].append(longer)
            continue
        base, num, star = sec.group(1), sec.group(2), sec.group(3)
        index = int(num) if num is not None else 0
        extended = num is None or bool(star)  # "key*=": extended, a single section
        sections.setdefault(base, []).append(
            (index << _WHERE_BITS) | (m.start(2) << 1) | extended)
    for base, parts in sections.items():
        out.setdefault(base, []).append(_join_sections(value, parts))
    return tuple((key, tuple(values)) for key, values in out.items())


def _unquote_bytes(text: bytes) -> bytes:
    """``urllib.parse.unquote_to_bytes`` window by window (it keeps a piece per
    ``%``): no window ends inside a ``%XX`` escape."""
    out = bytearray()
    pos = 0
    while pos < len(text):
        end = min(len(text), pos + FOLD_WINDOW)
        pct = text.rfind(b"%", end - 2, end) if end < len(text) else -1
        end = pct if pct > pos else end
        out += urllib.parse.unquote_to_bytes(text[pos:end])
        pos = end
    return bytes(out)


def _join_sections(value: str, parts: list[int]) -> str:
    """The sections of one parameter joined in order of their numbers (the first
    of a number counts), extended runs %-decoded. ``parts`` (sorted here): number
    << _WHERE_BITS | where in ``value`` its text starts << 1 | extended."""
    charset = ""
    chunks: list[bytes] = []
    parts.sort()
    first = parts[0] >> _WHERE_BITS
    run = bytearray()  # consecutive extended sections: %-decoded in one call

    def flush() -> None:
        if run:
            chunks.append(_unquote_bytes(bytes(run)))
            run.clear()

    last = -1
    for packed in parts:
        index = packed >> _WHERE_BITS
        if index == last:
            continue  # a number given twice: the first counts
        last = index
        where, extended = (packed & _WHERE_MASK) >> 1, packed & 1
        m = _VALUE.match(value, where)
        text = _unquote(m.group() if m is not None else "")
        if extended and index == first and text.count("'") >= 2:
            charset, _lang, text = text.split("'", 2)
        if extended:
            run += text.encode("latin-1", "replace")
        else:
            flush()
            chunks.append(text.encode("latin-1", "replace"))
    flush()
    return _charset_decode(b"".join(chunks), charset or "utf-8")


def main_value(value: str) -> str:
    """The value before the first ';', lower-case, comments removed."""
    return _COMMENT.sub("", value.split(";", 1)[0]).strip().lower()


def content_types(h: Headers) -> list[str]:
    """Every declared Content-Type (main value), first one first."""
    out: dict[str, None] = {}
    for v in h.all("content-type"):
        t = main_value(v)
        if t:
            out[t] = None
    return list(out)


def boundaries(h: Headers) -> list[bytes]:
    """Every boundary any Content-Type header declares, in every unfolding."""
    out: dict[bytes, None] = {}
    for v in h.all_both("content-type"):
        for b in params(v).get("boundary", []):
            for cand in (b, b.strip(), _COMMENT.sub("", b).strip()):
                raw = cand.encode("latin-1", "replace")
                if raw:  # however long: RFC 2046 says 70, lenient readers take more
                    out[raw] = None
    return list(out)


def transfer_encodings(h: Headers) -> list[str]:
    """Every Content-Transfer-Encoding, normalised (comments and case removed)."""
    out: dict[str, None] = {}
    for v in h.all("content-transfer-encoding"):
        token = _COMMENT.sub("", v).strip().lower().split(";")[0].split()
        cte = token[0].strip('"') if token else ""
        for known in ("base64", "quoted-printable", "uuencode", "uue", "yenc", "binhex"):
            if known in cte:
                cte = {"uue": "uuencode"}.get(known, known)
                break
        if cte:
            out[cte] = None
    return list(out)


def names(h: Headers) -> list[str]:
    """Every name a client could show for this part, raw and decoded."""
    raws: list[str] = []
    for header in ("content-disposition", "content-type"):
        for v in h.all_both(header):
            found = params(v)
            for key in NAME_PARAMS:
                raws += found.get(key, [])
    for header in NAME_HEADERS:
        raws += [v.strip().strip('"') for v in h.all(header)]
    out: dict[str, None] = {}
    for raw in dict.fromkeys(raws):
        text = _utf8(raw)
        cands = (decode_words(text), decode_words(text, drop_bad=True),
                 decode_words(text, lenient=True), text, raw) if "=?" in text else (text, raw)
        for cand in cands:
            cand = cand.strip()
            if cand:
                out[cand] = None
    return list(out)
