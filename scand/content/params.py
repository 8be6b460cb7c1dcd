"""What a header block says: parameters, names, boundaries and types, read leniently.

Parameters are found wherever ``key=value`` appears, quoted or not, with RFC
2231 continuations and charsets, and RFC 2047 words decoded strictly and
leniently (a malformed base64 word by its valid prefix, as mail clients do).
The header block itself is read by :mod:`scand.content.headers`. Pure stdlib,
never raises for bad input.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import urllib.parse

from scand.content.headers import FOLD_WINDOW, NAME_HEADERS, NAME_PARAMS, Headers

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
COMMENT = re.compile(r"\([^()]*\)")
_ESCAPE = re.compile(r"\\(.)", re.S)
_B64_NOT = re.compile(r"[^A-Za-z0-9+/]")
# The parameters the walker reads: names, boundaries, message/partial's.
USED_PARAMS = frozenset((*NAME_PARAMS, "boundary", "id", "number", "total"))


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

def _unescape(text: str) -> str:
    """``\\x`` -> ``x``, window by window: one ``re.sub`` over a value of many
    escapes keeps a piece per escape until it joins them (ten times the value).
    No window ends between a backslash and the character it escapes (an odd run
    of backslashes at its end takes the next character in)."""
    chunks: list[str] = []
    pos = 0
    while pos < len(text):
        end = min(len(text), pos + FOLD_WINDOW)
        window = text[pos:end]
        if end < len(text) and (len(window) - len(window.rstrip("\\"))) % 2:
            end += 1
            window = text[pos:end]
        chunks.append(_ESCAPE.sub(r"\1", window))
        pos = end
    return "".join(chunks)


def _unquote(raw: str) -> str:
    if raw.startswith('"'):
        inner = raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:]
        return _unescape(inner) if "\\" in inner else inner
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
    return COMMENT.sub("", value.split(";", 1)[0]).strip().lower()


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
            for cand in (b, b.strip(), COMMENT.sub("", b).strip()):
                raw = cand.encode("latin-1", "replace")
                if raw:  # however long: RFC 2046 says 70, lenient readers take more
                    out[raw] = None
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
