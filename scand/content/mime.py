"""MIME structure for the walker: multipart splitting and body decoding, as unions.

Headers are read by :mod:`scand.content.headers` (every reading); this module
cuts bodies and decodes them, again in every way a client might:

* a multipart body is split at the delimiter lines of *every* declared
  boundary (``boundary=`` and ``boundary*=``, both unfoldings, comments
  removed); a close delimiter does not stop the split (``--B---`` is a close
  to some readers and a delimiter to others, and parts after it are real to
  someone); delimiter lines that only start with the boundary are a second
  reading; when no declared boundary yields a part, boundaries are guessed
  from the body's ``--token`` lines.
* a leaf is decoded by every Content-Transfer-Encoding it declares, and as
  base64 when it declares none but looks like it. The encodings are one
  table (:data:`ENCODINGS`): a new one is an entry plus its cases.

Splitting is ``bytes.find`` over the body (C speed); bodies are decoded with
binascii, never fed through the stdlib's feedparser line by line.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

from scand.content import textblocks, transfer
from scand.content.headers import Headers
from scand.content.params import COMMENT, boundaries
from scand.content.parts import Slice
from scand.content.transfer import Buffer

# A guessed delimiter line: "--token" (maybe "--token--"), nothing else.
_GUESS = re.compile(rb"(?m)^--([!-~][ -~]*?)(--)?[ \t]*\r?$")


Span = tuple[int, int]
_NON_WS = re.compile(rb"[^ \t\r\n\x0b\x0c]")


def _delimiters(body: Slice, mark: bytes, cap: int) -> list[tuple[int, int, bool]]:
    """(line start, line end, exact) of each line of ``body`` that starts with
    ``mark`` ("--" + boundary), as offsets in its buffer. ``exact``: a delimiter to
    RFC 2046 (only dashes and whitespace may follow); the others are delimiters to
    prefix-matching readers. More than ``cap`` are not looked for: that many parts
    pass the part limit."""
    buf, lo, hi = body.buf, body.start, body.end
    found: list[tuple[int, int, bool]] = []
    pos = lo if buf.startswith(mark, lo, hi) else buf.find(b"\n" + mark, lo, hi)
    while pos >= 0 and len(found) <= cap:
        line_start = pos if buf.startswith(mark, pos, hi) else pos + 1
        after = line_start + len(mark)
        line_end = buf.find(b"\n", after, hi)
        end = hi if line_end < 0 else line_end
        found.append((line_start, end, not buf[after:end].lstrip(b"-").strip()))
        pos = buf.find(b"\n" + mark, after, hi)
    return found


def _trim(buf: bytes, start: int, end: int) -> Span:
    """``buf[start:end]`` without trailing line ends, as offsets (no copy)."""
    while end > start and buf[end - 1] in b"\r\n":
        end -= 1
    return start, end


def _cut(body: Slice, delims: list[tuple[int, int, bool]]) -> list[Span]:
    buf = body.buf
    parts = [_trim(buf, end + 1, nxt) for (_, end, _x), (nxt, _e, _y)
             in itertools.pairwise(delims)]
    if delims:
        last_start, last_end, _ = delims[-1]
        closing = buf[last_start:last_end].rstrip().endswith(b"--")
        if not closing and _NON_WS.search(buf, last_end + 1, body.end):
            parts.append((last_end + 1, body.end))
    return parts


def split_by(body: Slice, boundary: bytes, cap: int) -> tuple[list[Span], bool]:
    """Spans (offsets in ``body``'s buffer) of the parts of ``body`` at
    ``boundary``'s delimiter lines (the exact reading, then the prefix reading's),
    and whether the readings disagreed; at most ``cap`` + 1 delimiters are looked
    for."""
    loose = _delimiters(body, b"--" + boundary, cap)
    exact = [d for d in loose if d[2]]
    parts = _cut(body, exact)
    odd = False
    if len(loose) != len(exact):
        odd = True
        parts += _cut(body, loose)
    closes = [d for d in exact if body.buf[d[0] : d[1]].rstrip().endswith(b"--")]
    if closes and closes[0] != exact[-1]:
        odd = True  # parts after a close delimiter: real to some readers
    return parts, odd


def guessed_delimiters(body: Slice, known: list[bytes]
                       ) -> dict[bytes, list[tuple[int, int, bool]]]:
    """The delimiter lines of every boundary a reader could infer from ``--token``
    lines in the body, by token: one pass, however many tokens (every one is
    tried; its parts are charged like any others)."""
    found: dict[bytes, list[tuple[int, int, bool]]] = {}
    if body.buf.find(b"--", body.start, body.end) < 0:
        return found
    lo = body.start  # the regex runs on a view: "^" matches at the body's start
    for m in _GUESS.finditer(body.view()):
        found.setdefault(m.group(1).rstrip(), []).append((lo + m.start(), lo + m.end(), True))
    for token in known:
        found.pop(token, None)
    return found


def split(headers: Headers, body: Slice, declared_multipart: bool,
          charge: Callable[[], None], cap: int) -> tuple[list[Slice], bool]:
    """(parts, odd) for an entity's body, the union over every boundary it
    declares, or guesses when it declares a multipart that yields none. A part
    two readings cut alike is one part; ``charge`` is called for each new part as
    it is found, so a part limit stops the split, not the walk after it (and no
    more than ``cap`` + 1 delimiter lines are looked for: the parts left). Parts
    are slices of the body's buffer, not copies."""
    declared = boundaries(headers)
    spans: dict[Span, None] = {}
    odd = len(declared) > 1

    def add(found: list[Span]) -> None:
        for span in found:
            if span not in spans:
                charge()
                spans[span] = None

    for boundary in declared:
        found, disagree = split_by(body, boundary, cap)
        odd = odd or disagree
        add(found)
    if not spans and (declared_multipart or declared):
        for delims in guessed_delimiters(body, declared).values():
            found = _cut(body, delims)
            if found:
                odd = True
                add(found)
    return [Slice(body.buf, a, b) for a, b in spans], odd


# -- transfer encodings ---------------------------------------------------------------

Whole = Callable[[], bytes]


@dataclass(frozen=True, slots=True)
class Encoding:
    """A Content-Transfer-Encoding. ``names``: substrings of a header value that
    name it (``x-uue`` is uuencode); ``read(body, whole)``: every reading of a
    body in it (decoded from a view of the body, or from its bytes: ``whole()``,
    copied once) and whether decoders agree on the body (otherwise its readings
    are alternative ones, handed to an engine that decodes by itself);
    ``canonical(view)``: that alone, for a body that is not decoded."""

    name: str
    names: tuple[str, ...]
    read: Callable[[Slice, Whole], tuple[list[bytes], bool]]
    canonical: Callable[[Buffer], bool] = lambda _view: True


def _as_is(body: Slice, whole: Whole) -> tuple[list[bytes], bool]:
    return [whole()], True


def _qp(body: Slice, whole: Whole) -> tuple[list[bytes], bool]:
    view = body.view()
    canon = transfer.canonical_qp(view)
    return transfer.qp_readings(view, canon), canon


def _uuencode(body: Slice, whole: Whole) -> tuple[list[bytes], bool]:
    blocks = [data for _name, data in textblocks.uudecode_blocks(whole())]
    return blocks or [whole()], True


def _yenc(body: Slice, whole: Whole) -> tuple[list[bytes], bool]:
    # The raw body too: its yEnc blocks are walked (and an incomplete one
    # reported) like any yEnc in a text.
    blocks = [data for _name, data, _complete in textblocks.yenc_blocks(whole())]
    return [*blocks, whole()], True


AS_IS = Encoding("", (), _as_is)  # any name not below
ENCODINGS: dict[str, Encoding] = {e.name: e for e in (
    # The identities: named exactly (no substrings), the body as it is.
    Encoding("7bit", (), _as_is),
    Encoding("8bit", (), _as_is),
    Encoding("binary", (), _as_is),
    Encoding("base64", ("base64",), lambda body, _whole: transfer.base64_body(body),
             transfer.canonical_base64),
    Encoding("quoted-printable", ("quoted-printable",), _qp, transfer.canonical_qp),
    Encoding("uuencode", ("uuencode", "uue"), _uuencode),
    Encoding("yenc", ("yenc",), _yenc),
    Encoding("binhex", ("binhex",), _as_is),  # the body is sniffed as a BinHex container
)}


def transfer_encodings(h: Headers) -> list[str]:
    """Every Content-Transfer-Encoding, normalised (comments and case removed, a
    value naming an encoding of :data:`ENCODINGS` read as that one)."""
    out = dict.fromkeys(encoding_name(v) for v in h.all("content-transfer-encoding"))
    out.pop("", None)
    return list(out)


@functools.lru_cache(maxsize=256)
def encoding_name(value: str) -> str:
    """One Content-Transfer-Encoding value, normalised (see transfer_encodings)."""
    token = COMMENT.sub("", value).strip().lower().split(";")[0].split()
    cte = token[0].strip('"') if token else ""
    return next((e.name for e in ENCODINGS.values() if any(n in cte for n in e.names)), cte)


def canonical(cte: str, view: Buffer) -> bool:
    """True when decoders agree on ``view`` as ``cte`` text."""
    return ENCODINGS.get(cte, AS_IS).canonical(view)


def leaf_readings(headers: Headers, body: Slice) -> tuple[list[bytes], bool]:
    """A leaf body decoded by every transfer encoding it declares (or that its
    bytes suggest), and whether there was more than one reading. base64 and
    quoted-printable are decoded from a view of the body (no copy of the encoded
    text); the body is copied only where it is a reading itself."""
    ctes = transfer_encodings(headers)
    canon = True
    out: list[bytes] = []
    copied: list[bytes] = []  # the body's bytes, copied once if a reading needs them

    def whole() -> bytes:
        if not copied:
            copied.append(body.tobytes())
        return copied[0]

    for cte in ctes or [""]:
        decoded, agreed = ENCODINGS.get(cte, AS_IS).read(body, whole)
        out += decoded
        canon = canon and agreed
    if "base64" not in ctes and transfer.looks_base64(body.view()):
        out += transfer.base64_readings(body.view())
    readings = transfer.unique(out)
    odd = len(readings) > 1 or len(ctes) > 1 or not canon
    return readings, odd
