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
* every instance of a header counts (duplicates are a union, not a choice).

What a header says (parameters, names, boundaries, types) is read by
:mod:`scand.content.params`. Pure stdlib, never raises for bad input.
Anything unusual sets ``Headers.odd``: the walker then treats the entity as
ambiguous.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from scand.content.parts import Slice

# A header line: a field name, optional whitespace, a colon (RFC 5322 allows no
# whitespace there, but clients accept it and so must we).
_FIELD = re.compile(r"^([\x21-\x39\x3b-\x7e]+)([ \t]*):(.*)$", re.S)
_LINE_END = re.compile(rb"\r\n|\n|\r(?!\n)")
# An empty line: found by its first line end (a literal first byte: the regex
# skips from line end to line end at C speed), widened over a CR before it.
_BLANK = re.compile(rb"\n\r?\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
# Headers that name a part, besides the filename/name parameters.
NAME_HEADERS = ("content-name", "x-sun-data-name", "x-attachment-name")
# Header-only names a part may carry (Content-Type and Content-Disposition params).
NAME_PARAMS = ("filename", "name")


def kept_header(name: str) -> bool:
    """The headers a reading keeps: every Content-* (duplicates that disagree make
    an entity odd) and the name headers; the walker reads no others, and a block
    of a million other headers costs no memory per header."""
    return name.startswith("content-") or name in NAME_HEADERS




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
    blank = blank_line(data, start, end)  # the header block: a bare CR in a body is no line end
    if _BARE_CR.search(data, start, end if blank is None else blank[0]):
        lf = data[start:end].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        for reading in _readings(lf, 0, len(lf)):
            reading.headers.odd = True
            out.append(reading)
    return out


def blank_line(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """(start, end) of the first empty line in ``data[start:end]`` with the line
    end before it (``\\r?\\n\\r?\\n``), or None."""
    m = _BLANK.search(data, start, end)
    if m is None:
        return None
    first = m.start() - (m.start() > start and data[m.start() - 1] == 0x0D)
    return first, m.end()


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
    empty = blank_line(data, start, end)
    head_end, body_start = (empty[0] + 1, empty[1]) if empty else (end, end)
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
