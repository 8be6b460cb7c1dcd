"""Base64 and quoted-printable for the walker, each lenient the way some client is.

The table of transfer encodings (:data:`scand.content.mime.ENCODINGS`) points
here for these two: every reading of a body (the union), and when a body is
*canonical* (read alike by every decoder; anything else is read leniently too,
and those readings are handed to an engine that decodes by itself).

* base64: the stdlib stops at the first complete pad (``YWI=ZGVm`` -> ``ab``),
  while other clients skip the ``=`` and go on; both readings are returned.
* quoted-printable: a soft line break followed by spaces (``=  \\n``) is a
  soft break to RFC 2045 (trailing whitespace is transport padding), not to
  the stdlib; an ``=`` that starts no escape is kept by the strict reading and
  dropped by the lenient one (see :func:`qp_readings`).
* uuencode and yEnc bodies are decoded block by block
  (:mod:`scand.content.textblocks`).

Nothing here raises for bad input; undecodable pieces are skipped.
"""

from __future__ import annotations

import binascii
import re

from scand.content.parts import Slice

# Characters outside the base64 alphabet (and "="): removed with bytes.translate,
# at C speed and without a piece per match.
_B64_KEEP = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
B64_JUNK = bytes(c for c in range(256) if c not in _B64_KEEP)
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


def base64_body(body: Slice) -> tuple[list[bytes], bool]:
    """(readings, canonical) of a base64 body (:func:`base64_readings`,
    :func:`canonical_base64`), decoded from a view of it. Whether it is canonical
    is told from the stdlib's reading where it can be (see
    :func:`_length_agrees`): the alphabet check reads the body only otherwise."""
    view = body.view()
    try:
        first: bytes | None = binascii.a2b_base64(view)
    except (binascii.Error, ValueError):
        first = None
    canon = (first is not None and _length_agrees(body, len(first))) or canonical_base64(view)
    return base64_readings(view, canon, first), canon


def _length_agrees(body: Slice, decoded: int) -> bool:
    """True when ``body`` is canonical by its shape: lines of one length, each
    ended alike (the positions of the line ends are read as two strided slices,
    a byte per line), and the stdlib decoded every other byte of it as base64.
    The stdlib skips anything outside the alphabet and stops at a pad in
    mid-stream; either way it decodes fewer bytes than the characters promise
    (one stray character, which the rounding could hide, leaves a count of 1
    modulo 4: never valid). False means only: ask :func:`canonical_base64`."""
    core, pads = _b64_core(body.view())
    if pads > 2:
        return False
    buf, start, end = body.buf, body.start, body.start + core
    newline = buf.find(b"\n", start, end)
    skipped = 0  # line-end bytes: checked at their places, the rest must decode
    if newline >= 0:
        ending = b"\r\n" if newline > start and buf[newline - 1] == 0x0D else b"\n"
        width = newline - start - len(ending) + 1  # characters in a line
        if width < 4:
            return False
        for i, byte in enumerate(ending):
            ends = buf[start + width + i : end : width + len(ending)]
            if ends.count(byte) != len(ends):
                return False
            skipped += len(ends)
    chars = core - skipped
    return chars % 4 != 1 and decoded == chars * 3 // 4


def base64_readings(body: Buffer, canonical_text: bool = False,
                    first: bytes | None = None) -> list[bytes]:
    """The stdlib's reading, plus the ``=``-skipping readings when pads come early.
    A canonical body is decoded straight from ``body`` (a view: no copy of it);
    ``canonical_text``: the caller knows it is (:func:`canonical`: no pad before
    the end), so it is not searched for one again; ``first``: the caller decoded
    it with the stdlib already."""
    if first is None:
        try:
            first = binascii.a2b_base64(body)
        except (binascii.Error, ValueError):
            first = b64(bytes(body).translate(None, B64_JUNK))  # bad padding at the end
    out = [first]
    pad = None if canonical_text else _PAD.search(body)
    if pad is None or not _NOT_PAD_WS.search(body, pad.start()):  # no pad before the end
        if not first and _NON_WS.search(body):
            out.append(b64_lines(body))
        return [o for o in out if o] or [b""]
    compact = bytes(body).translate(None, B64_JUNK)
    # Pads in mid-stream: decode each padded segment on its own, and all of it joined.
    each = bytearray()
    for m in _NOT_PAD.finditer(compact):
        each += b64(m.group())
    out.append(bytes(each))
    del each
    out.append(b64(compact.replace(b"=", b"")))
    del compact
    out.append(b64_lines(body))
    return unique(out)


def b64(text: bytes) -> bytes:
    text = text[: len(text) - len(text) % 4] if len(text) % 4 == 1 else text
    try:
        return binascii.a2b_base64(text + b"=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return b""


def b64_lines(body: Buffer) -> bytes:
    out = bytearray()
    for m in _LINE.finditer(body):
        out += b64(m.group().translate(None, B64_JUNK))
    return bytes(out)


# Base64 as every decoder reads it alike: the alphabet and white space, padding
# only at the end; and quoted-printable whose every "=" starts an escape or a
# soft line break. Anything else is read leniently, in ways an engine's own
# decoder may not share: those readings are handed to it (Part.alt).
_B64_ALPHABET_WS = _B64_KEEP[:-1] + b" \t\r\n\x0b\x0c"
_QP_ODD = re.compile(rb"=(?![0-9A-Fa-f]{2}|\r?\n)")


def canonical_base64(body: Buffer) -> bool:
    """True when ``body`` is base64 that decoders agree on (see above): checked
    with bytes.translate, no regex over every attachment."""
    core, pads = _b64_core(body)
    return pads <= 2 and not any(
        bytes(body[i : min(i + CHECK_WINDOW, core)]).translate(None, _B64_ALPHABET_WS)
        for i in range(0, core, CHECK_WINDOW))


def canonical_qp(body: Buffer) -> bool:
    """True when every ``=`` of ``body`` starts an escape or a soft line break."""
    return _QP_ODD.search(body) is None


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


def qp_readings(body: Buffer, canonical_text: bool = False) -> list[bytes]:
    """The stdlib's reading (an ``=`` that starts no escape is kept, with what
    follows it), and for a malformed body the lenient readings: soft breaks with
    trailing white space (``=  \\n``) taken as soft breaks, then also every stray
    ``=`` skipped, the valid ``=XX`` decoded (what clients that drop a bad escape
    show). ``canonical_text``: the caller knows every ``=`` is well formed
    (:func:`canonical_qp`), so the body is not searched again."""
    out = [binascii.a2b_qp(body)]
    if canonical_text or _QP_ODD.search(body) is None:
        return out
    text = bytes(body)
    if _QP_SOFT.search(text):
        text = sub_by_lines(_QP_SOFT, b"=\\1", text)
        out.append(binascii.a2b_qp(text))
        if _QP_ODD.search(text) is None:
            return unique(out)  # only soft breaks were malformed
    out.append(binascii.a2b_qp(sub_by_lines(_QP_ODD, b"", text)))
    return unique(out)


def unique(items: list[bytes]) -> list[bytes]:
    """``items`` without repeats, in order (readings that decode alike are one)."""
    seen: list[bytes] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen

