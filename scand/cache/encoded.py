"""A fast path for worm floods: a base64 body already known to decode to a virus.

The per-part cache still pays for the walk: parsing the MIME tree and
decoding every body (measured: about two thirds of a Klez-shaped message's
cost on a hit). But the copies of a worm differ in their headers, not in
their base64 body. So, before the walk, the top-level multipart is split
cheaply (byte searches for its boundary), and each base64 body is hashed as
it stands (line breaks included: copies from one worm, or through one relay,
wrap alike; normalising would cost a copy of every body on every message) and
looked up under ``...:b64:<sha256>``.

Only ``1:`` is ever answered this way, never ``0``: a clean message still
gets the whole walk, every scan and every name check. An entry is written
only after a real walk found a decoded part infected *and* this module's own
decoding of one of the message's base64 bodies gave exactly those bytes
(same SHA-256). A later message with the same base64 text therefore holds
the same infected bytes, whatever its headers say: answering ``1:`` for it
is what a full scan of that part answers. The cost of a miss is one hash of
each base64 body and one lookup each.

Stdlib only; runs in the worker.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from dataclasses import dataclass

# Only the top-level header block is searched for the boundary (nested parts fall
# back to the walk); a header block longer than this is not a fast-path message.
MAX_HEADER = 64 * 1024
_BOUNDARY = re.compile(rb'(?i)\bboundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))')
_BASE64 = re.compile(rb"(?im)^content-transfer-encoding:[ \t]*base64[ \t]*\r?$")
_MULTIPART = re.compile(rb"(?im)^content-type:[ \t]*multipart/")


@dataclass
class Body:
    """One base64 body of the message: its key digest and (lazily) its decoded digest."""

    text: bytes  # the base64 text as it stands in the message
    digest: str  # sha256 of ``text``: the lookup key
    decoded: str | None = None  # sha256 of the decoded bytes, once computed

    def decode(self) -> bytes | None:
        try:
            return binascii.a2b_base64(self.text)
        except binascii.Error:
            return None

    def decoded_digest(self) -> str:
        if self.decoded is None:
            raw = self.decode()
            self.decoded = "" if raw is None else hashlib.sha256(raw).hexdigest()
        return self.decoded


def _header_block(data: bytes) -> bytes | None:
    for sep in (b"\r\n\r\n", b"\n\n"):
        end = data.find(sep, 0, MAX_HEADER)
        if end >= 0:
            return data[:end]
    return None


def base64_bodies(data: bytes, min_bytes: int) -> list[Body]:
    """The base64 bodies of the top-level multipart's parts (empty if not one)."""
    headers = _header_block(data)
    if headers is None or not _MULTIPART.search(headers):
        return []
    m = _BOUNDARY.search(headers)
    if m is None:
        return []
    delimiter = b"--" + (m.group(1) or m.group(2))
    bodies = []
    for segment in data[len(headers):].split(delimiter)[1:]:
        part_headers = _header_block(segment)
        if part_headers is None or not _BASE64.search(part_headers):
            continue
        text = segment[len(part_headers):]
        if len(text) * 3 // 4 < min_bytes:
            continue
        bodies.append(Body(text, hashlib.sha256(text).hexdigest()))
    return bodies
