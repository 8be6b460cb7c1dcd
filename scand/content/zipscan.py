"""Zip, read both ways: the central directory *and* the local headers.

A zip names each member twice (central directory and local header) and
readers disagree on which to trust: the stdlib and 7-Zip use the central
directory, ClamAV and streaming unzippers the local headers. A worm can make
the two disagree, hide an archive behind an executable stub (self-extractor
layout, where the end-of-central-directory record is not at offset 0's
archive), or use the Info-ZIP Unicode path extra field (0x7075) for the name
a user sees. So every member is taken from both readings, with every name
either gives, and a local entry the central directory does not list is a
member too.

Blind spots of the engine beside the names-only walk (clamd/libclamav) are
reported here, because only the walker knows the member sizes and flags:

* a member larger than the engine's file size limit is cut and called clean
  by ClamAV 1.4 even with the exceeds-max alert on: ``-1:too-large``;
* a member whose local header carries zip64 sizes is skipped and called
  clean: it is decoded here and handed to the engine as a separate part.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from scand.content.parts import CHUNK, Budget, LimitHit
from scand.events import Reason

LOCAL = b"PK\x03\x04"
EOCD = b"PK\x05\x06"
# The end-of-central-directory record is in the last 64 KiB + 22 bytes.
EOCD_WINDOW = 65_536 + 22
ZIP64_EXTRA = 0x0001
# A local header the central directory does not list is taken only with these.
PLAUSIBLE_METHODS = (0, 8)
MAX_PLAUSIBLE_NAME = 1024
UNICODE_PATH = 0x7075


@dataclass(frozen=True)
class LocalEntry:
    offset: int
    name: str
    names: tuple[str, ...]
    flags: int
    method: int
    packed: int  # -1 = unknown (data descriptor or zip64 in the local header)
    size: int
    zip64: bool
    data_start: int


def has_zip(data: bytes, behind: bool = True) -> bool:
    """A zip: a local header at 0, or (``behind``: a zip may sit behind a stub) an
    end record near the end."""
    return data.startswith(LOCAL) or data.startswith(EOCD) or (
        behind and data.find(EOCD, max(0, len(data) - EOCD_WINDOW)) >= 0 and LOCAL in data)


def extra_names(extra: bytes) -> list[str]:
    """Names from the Unicode path extra field (0x7075), if present."""
    names: list[str] = []
    for tag, body in _extras(extra):
        if tag == UNICODE_PATH and len(body) > 5:
            names.append(body[5:].decode("utf-8", "replace"))
    return names


def _extras(extra: bytes) -> list[tuple[int, bytes]]:
    out = []
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        out.append((tag, extra[pos + 4 : pos + 4 + size]))
        pos += 4 + size
    return out


def _name(raw: bytes, flags: int) -> str:
    if flags & 0x800:
        return raw.decode("utf-8", "replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp437")


def local_at(data: bytes, pos: int) -> LocalEntry | None:
    """The local file header at ``pos``, or None when there is none."""
    if data[pos : pos + 4] != LOCAL or pos + 30 > len(data):
        return None
    (_, _ver, flags, method, _t, _d, _crc, packed, size, nlen, xlen) = struct.unpack_from(
        "<4sHHHHHIIIHH", data, pos)
    start = pos + 30 + nlen + xlen
    if start > len(data) or not nlen:
        return None
    extra = data[pos + 30 + nlen : start]
    zip64 = any(tag == ZIP64_EXTRA for tag, _ in _extras(extra)) or (
        packed == 0xFFFFFFFF or size == 0xFFFFFFFF)
    name = _name(data[pos + 30 : pos + 30 + nlen], flags)
    unknown = zip64 or (flags & 0x08 and packed == 0)
    return LocalEntry(pos, name, (name, *extra_names(extra)), flags, method,
                      -1 if unknown else packed, size, zip64, start)


def local_entries(data: bytes, lo: int = 0, hi: int | None = None, *, strict: bool = False
                  ) -> Iterator[LocalEntry]:
    """Every local file header starting in ``data[lo:hi]``, in order, as found (the
    caller charges each member it takes: no count cuts the search short).

    ``strict``: only headers :func:`plausible` accepts, told by their fixed fields
    before their names are decoded. Headers overlap when a stub repeats
    "PK\\3\\4"; the names decoded are charged, and past twice the input (plus
    a megabyte) the search stops with ``-1:unreadable`` rather than read one
    name per six bytes of input."""
    end = len(data) if hi is None else hi
    work = 0
    pos = data.find(LOCAL, lo, end)
    while pos >= 0:
        nlen = int.from_bytes(data[pos + 26 : pos + 28], "little")
        method = int.from_bytes(data[pos + 8 : pos + 10], "little")
        if not strict or (method in PLAUSIBLE_METHODS and nlen < MAX_PLAUSIBLE_NAME):
            work += nlen + int.from_bytes(data[pos + 28 : pos + 30], "little")
            if work > 2 * len(data) + CHUNK:
                raise LimitHit(Reason.UNREADABLE, "zip local headers overlap")
            entry = local_at(data, pos)
            if entry is not None:
                yield entry
        pos = data.find(LOCAL, pos + 4, end)


def gaps(spans: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """The stretches of ``[0, length)`` no span covers: only there can a local
    header hide that the central directory does not list (a header inside a
    listed member's data is that member's bytes, not an entry)."""
    out: list[tuple[int, int]] = []
    pos = 0
    for lo, hi in sorted(spans):
        if lo > pos:
            out.append((pos, lo))
        pos = max(pos, hi)
    if pos < length:
        out.append((pos, length))
    return out


class BadMember(Exception):
    """A local entry that cannot be decoded here."""


def plausible(entry: LocalEntry) -> bool:
    """A real local header rather than "PK\\3\\4" by chance inside other data."""
    return (entry.method in PLAUSIBLE_METHODS and entry.name.isprintable()
            and len(entry.name) < MAX_PLAUSIBLE_NAME)


def read_local(data: bytes, entry: LocalEntry, budget: Budget, where: str) -> bytes:
    """A local entry's bytes: stored or deflated, by its sizes or by its stream end,
    CHUNK by CHUNK under the walk's budget.

    Raises :class:`BadMember` for encrypted or unsupported entries, or bad data."""
    if entry.flags & 0x1:
        raise BadMember("encrypted")
    if entry.method == 0:
        if entry.packed >= 0:
            body = data[entry.data_start : entry.data_start + entry.packed]
            if len(body) < entry.packed:
                raise BadMember("stored data ends early")
        else:
            stops = [c for c in (data.find(b"PK\x07\x08", entry.data_start),
                                 data.find(LOCAL, entry.data_start)) if c >= 0]
            body = data[entry.data_start : min(stops) if stops else len(data)]
        budget.grow(len(body))
        return body
    if entry.method != 8:
        raise BadMember(f"method {entry.method}")
    engine = zlib.decompressobj(-15)
    end = len(data) if entry.packed < 0 else entry.data_start + entry.packed
    pending = data[entry.data_start : end]
    out = bytearray()
    try:
        while pending and not engine.eof:
            chunk = engine.decompress(pending, CHUNK)
            pending = engine.unconsumed_tail
            out += chunk
            budget.grow(len(chunk))
            budget.ratio(len(out), end - entry.data_start - len(pending), where)
            if not chunk and not pending:
                break
    except zlib.error as exc:
        raise BadMember(str(exc)) from exc
    if not engine.eof:
        raise BadMember("deflate stream ends early")
    return bytes(out)
