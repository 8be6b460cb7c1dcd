"""Archive and compression openers for the walker: zip, tar, gzip, bzip2, xz.

Everything is decompressed incrementally, ``CHUNK`` bytes at a time, checking
the walk's budget (total decoded bytes) and the expansion ratio after each
step, so a bomb is stopped after about a megabyte of output, not after it
has filled the memory cap. An opener yields :class:`Member` items, or an
:class:`Encrypted`/``Unchecked`` finding, and never raises for bad input.
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import re
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Any

from scand.content import decoders, formats, zipscan
from scand.content.parts import CHUNK, Budget, Encrypted, LimitHit, Member
from scand.events import Reason, Unchecked

# In a names-only walk, members with these suffixes are still opened: they may
# hold further names.
CONTAINER_SUFFIXES = (".zip", ".jar", ".gz", ".tgz", ".bz2", ".tbz", ".xz", ".txz", ".tar",
                      ".eml", ".msg", ".mbox", ".iso", ".img", ".exe", ".dat", ".hqx")
# Bytes read from a member to sniff whether it is itself a container (an ISO 9660
# volume descriptor starts at 32 KiB).
SNIFF = 34 * 1024
# Zip methods ClamAV 1.4 decodes (stored, deflate, deflate64, implode); members in
# others (bzip2, lzma, ...) are decoded here and handed to it as parts.
ENGINE_ZIP_METHODS = (0, 1, 6, 8, 9)

Opened = Iterator[Member | Encrypted | Unchecked]
Opener = Callable[[bytes, tuple[str, ...], Budget, bool, str], Opened]


# Archive formats recognised but not decoded here: the built-in engine cannot see
# inside them, so they are answered -1:unreadable, never 0 (clamd decodes them).
UNDECODED = {
    b"7z\xbc\xaf\x27\x1c": "7z",
    b"Rar!\x1a\x07": "rar",
    b"MSCF\x00\x00\x00\x00": "cab",
    b"\x60\xea": "arj",  # with a plausible header size, see sniff()
    b"070701": "cpio",
    b"070702": "cpio",
    b"070707": "cpio",
    b"SZDD\x88\xf0\x27\x33": "szdd",
}


def sniff(data: bytes, behind: bool = True) -> str | None:
    """The container kind of ``data`` by its magic bytes, or None. ``behind``: also
    look for a zip behind a stub (an end record near the end; a search of the
    last 64 KiB, so the walker asks only for binary parts and archive names)."""
    for magic, kind in UNDECODED.items():
        if data.startswith(magic):
            if kind == "arj" and not 30 <= int.from_bytes(data[2:4], "little") <= 2600:
                continue  # two bytes alone would match one binary file in 65,536
            return kind
    if zipscan.has_zip(data, behind):
        return "zip"
    if formats.is_tnef(data):
        return "tnef"
    if decoders.has_binhex(data[:4096], bare=True):
        return "binhex"
    if data.startswith(b"\x1f\x8b"):
        return "gzip"
    if data.startswith(b"BZh") and data[3:4].isdigit():
        return "bzip2"
    if data.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if len(data) >= 512 and (data[257:262] == b"ustar" or _tar_checksum_ok(data)):
        return "tar"
    if formats.is_iso(data):
        return "iso"
    return None


def _tar_checksum_ok(data: bytes) -> bool:
    """A v7 tar header has no magic, but its checksum field must add up."""
    field = data[148:156].replace(b"\x00", b" ").strip()
    if not field or not all(48 <= c <= 55 for c in field) or not data[:1].strip(b"\x00"):
        return False
    want = int(field, 8)
    return want == sum(data[:148]) + 8 * 32 + sum(data[156:512])


def _read_member(stream: IO[bytes], budget: Budget, packed: int, where: str,
                 limit: int | None = None) -> bytes:
    out = bytearray()
    while True:
        want = CHUNK if limit is None else min(CHUNK, limit - len(out))
        if want <= 0:
            return bytes(out)
        chunk = stream.read(want)
        if not chunk:
            return bytes(out)
        out += chunk
        budget.grow(len(chunk))
        budget.ratio(len(out), packed, where)


def open_zip(data: bytes, names: tuple[str, ...], budget: Budget, names_only: bool,
             where: str) -> Opened:
    """Members from the central directory and from the local headers (the union)."""
    try:
        archive: zipfile.ZipFile | None = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist() if archive is not None else []
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError,
            struct.error):
        archive, infos = None, []
    listed: dict[int, zipscan.LocalEntry | None] = {}
    covered: list[tuple[int, int]] = []
    for info in infos:
        entry = listed[info.header_offset] = zipscan.local_at(data, info.header_offset)
        if entry is not None:
            covered.append((entry.offset, entry.data_start + info.compress_size))
    # Local headers the central directory does not list can only be outside the
    # listed members: scan those stretches, not the compressed data.
    local = zipscan.local_entries(data) if archive is None else (
        e for lo, hi in zipscan.gaps(covered, len(data))
        for e in zipscan.local_entries(data, lo, hi, strict=True))
    opened: set[int] = set()
    for info in infos:
        if info.is_dir():
            continue
        assert archive is not None
        if info.header_offset in opened:  # listed again under another name: names only
            budget.part()
            yield Member(info.filename, None, names=(info.filename,))
            continue
        opened.add(info.header_offset)
        yield from _central_member(archive, data, info, listed[info.header_offset], budget,
                                   names_only, where)
    taken = 0  # local entries come in offset order: one inside the last taken is its data
    found = False
    for entry in local:
        found = True
        if entry.offset in listed or entry.offset < taken:
            continue  # listed, or "PK\3\4" inside a member's data
        if entry.name.endswith("/") or (archive is not None and not zipscan.plausible(entry)):
            continue
        label = f"{where}>zip-local:{entry.name}"
        if entry.flags & 0x1:
            budget.part()
            yield Encrypted(entry.name, label)
            continue
        try:
            body = zipscan.read_local(data, entry, budget, label)
        except zipscan.BadMember as exc:
            yield Unchecked(Reason.UNREADABLE, f"zip member {label}: {exc}")
            continue
        budget.part()
        yield Member(entry.name, body, names=entry.names, alt=True)
        taken = entry.data_start + max(entry.packed, 0)
    if archive is None and not found:
        yield Unchecked(Reason.UNREADABLE, f"corrupt zip at {where}")


def _central_member(archive: zipfile.ZipFile, data: bytes, info: zipfile.ZipInfo,
                    entry: zipscan.LocalEntry | None, budget: Budget, names_only: bool,
                    where: str) -> Opened:
    label = f"{where}>zip:{info.filename}"
    every = (info.filename, *zipscan.extra_names(info.extra), *(entry.names if entry else ()))
    member_names = tuple(dict.fromkeys(every))
    if info.flag_bits & 0x1:
        budget.part()
        yield Encrypted(info.filename, label)
        return
    budget.ratio(info.file_size, info.compress_size, label)  # declared sizes first
    limit = budget.engine_max
    if names_only and limit is not None:
        declared = max(info.file_size, entry.size if entry and not entry.zip64 else 0)
        if declared > limit:
            yield Unchecked(Reason.TOO_LARGE, f"zip member {label}: {declared}>{limit}, "
                            "the engine would scan a prefix only")
            return
    # The engine skips zip64-local members and methods it cannot decode: ours to read.
    alt = names_only and ((entry is not None and entry.zip64)
                          or info.compress_type not in ENGINE_ZIP_METHODS)
    try:
        with archive.open(info) as stream:
            if names_only and not alt and not info.filename.lower().endswith(
                    CONTAINER_SUFFIXES):
                head = stream.read(SNIFF)
                if sniff(head) is None:
                    yield Member(info.filename, None, names=member_names)
                    return
                body = head + _read_member(stream, budget, info.compress_size, label)
            else:
                body = _read_member(stream, budget, info.compress_size, label)
    except LimitHit:
        raise
    except (zipfile.BadZipFile, NotImplementedError, ValueError, OSError, EOFError,
            zlib.error, lzma.LZMAError, RuntimeError, struct.error) as exc:
        # The stdlib refuses a member whose local name differs from the central
        # one; readers that trust the local header open it. So do we.
        try:
            if entry is None or not zipscan.plausible(entry):
                raise zipscan.BadMember(str(exc)) from exc
            body = zipscan.read_local(data, entry, budget, label)
        except zipscan.BadMember:
            yield Unchecked(Reason.UNREADABLE, f"corrupt zip member {label}: {exc}")
            return
        alt = True
    if names_only and limit is not None and len(body) > limit:
        yield Unchecked(Reason.TOO_LARGE, f"zip member {label}: {len(body)}>{limit}")
        return
    yield Member(info.filename, body, names=member_names, alt=alt)


def open_tar(data: bytes, names: tuple[str, ...], budget: Budget, names_only: bool,
             where: str) -> Opened:
    try:
        archive = tarfile.TarFile(fileobj=io.BytesIO(data), mode="r")
        members = archive.getmembers()
    except (tarfile.TarError, ValueError, OSError, EOFError) as exc:
        yield Unchecked(Reason.UNREADABLE, f"corrupt tar at {where}: {exc}")
        return
    with archive:
        for info in members:
            if not info.isfile():
                continue
            stream = archive.extractfile(info)
            if stream is None:
                continue
            # Tar stores members as they are: the bytes are in memory already, no ratio.
            try:
                body = stream.read()
            except (tarfile.TarError, OSError, EOFError) as exc:
                yield Unchecked(Reason.UNREADABLE, f"corrupt tar member {info.name}: {exc}")
                continue
            budget.grow(len(body))
            yield Member(info.name, body, names=_tar_names(data, info))
            if len(body) < info.size:
                yield Unchecked(Reason.UNREADABLE, f"truncated tar member {info.name}")


def _tar_names(data: bytes, info: tarfile.TarInfo) -> tuple[str, ...]:
    """The member's name, and the plain ustar name its pax or GNU long-name header
    overrode (readers without pax support show that one)."""
    names = [info.name]
    header = data[info.offset_data - 512 : info.offset_data]
    if len(header) == 512:
        raw = header[:100].split(b"\x00", 1)[0]
        prefix = header[345:500].split(b"\x00", 1)[0] if header[257:262] == b"ustar" else b""
        for cand in (raw, prefix + b"/" + raw if prefix else b""):
            text = cand.decode("utf-8", "replace")
            if text and text not in names:
                names.append(text)
    return tuple(names)


def _stream_name(names: tuple[str, ...], suffixes: tuple[str, ...]) -> str:
    for name in names:
        base = os.path.basename(name)
        for suffix in suffixes:
            if base.lower().endswith(suffix) and len(base) > len(suffix):
                return base[: -len(suffix)] + (".tar" if suffix.startswith(".t") else "")
    return names[0] + ".out" if names else "stream"


def _gzip_name(data: bytes) -> str | None:
    """The original name stored in a gzip header (FNAME), if any."""
    if len(data) < 10 or not data[3] & 0x08:
        return None
    pos = 10
    if data[3] & 0x04:  # FEXTRA
        pos += 2 + int.from_bytes(data[10:12], "little")
    end = data.find(b"\x00", pos)  # however long: a cut name loses its suffix
    return data[pos:end].decode("latin-1") if end > pos else None


class Truncated(Exception):
    """A compressed stream ended early; ``partial`` is what it held."""

    def __init__(self, partial: bytes) -> None:
        super().__init__("stream ends early")
        self.partial = partial


# Compressed input is fed to a decompressor this much at a time: what it leaves
# over at the end of a stream (copied by the stdlib) is never more than this, so
# thousands of concatenated streams cost their length, not its square.
WINDOW = 64 * 1024
_NOT_ZERO = re.compile(rb"[^\x00]")


def _decompress(data: bytes, budget: Budget, where: str, make: Callable[[], object]
                ) -> tuple[bytes, int]:
    """Run a zlib/bz2/lzma decompressor CHUNK by CHUNK, multi-member aware: the
    bytes of every stream, and how many streams there were.

    Raises :class:`Truncated` when the input ends inside a stream."""
    out = bytearray()
    view = memoryview(data)
    pos = 0  # input handed to decompressors so far
    streams = 0
    while pos < len(data):
        streams += 1
        if streams > 1:
            budget.part()  # each further stream is one more member
        engine: Any = make()
        feed: bytes | memoryview = b""
        while True:
            tail = getattr(engine, "unconsumed_tail", b"")  # zlib: input it did not take
            if tail:
                feed = tail
            elif getattr(engine, "needs_input", True):  # bz2/lzma buffer their input
                feed = view[pos : pos + WINDOW]
                pos += len(feed)
            else:
                feed = b""
            chunk = engine.decompress(feed, CHUNK)
            out += chunk
            budget.grow(len(chunk))
            budget.ratio(len(out), pos, where)
            if engine.eof:
                pos -= len(engine.unused_data)  # the next stream starts there
                break
            if not chunk and not feed and pos >= len(data):
                raise Truncated(bytes(out))
        skip = _NOT_ZERO.search(data, pos)  # padding between members
        pos = len(data) if skip is None else skip.start()
    return bytes(out), streams


def _compressed(kind: str, make: Callable[[], object], suffixes: tuple[str, ...]) -> Opener:
    def opener(data: bytes, names: tuple[str, ...], budget: Budget, names_only: bool,
               where: str) -> Opened:
        label = f"{where}>{kind}"
        name = (_gzip_name(data) if kind == "gzip" else None) or _stream_name(names, suffixes)
        try:
            body, streams = _decompress(data, budget, label, make)
        except Truncated as cut:
            # Scan what arrived (it may hold a virus), but never call the whole clean.
            yield Member(name, cut.partial)
            yield Unchecked(Reason.UNREADABLE, f"truncated {kind} at {where}")
            return
        except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
            yield Unchecked(Reason.UNREADABLE, f"corrupt {kind} at {where}: {exc}")
            return
        # Engines that decode by themselves may read the first stream only (ClamAV's
        # bzip2 does): the streams after it are the walker's reading.
        yield Member(name, body, alt=streams > 1)

    return opener


def _undecoded(kind: str) -> Opener:
    def opener(data: bytes, names: tuple[str, ...], budget: Budget, names_only: bool,
               where: str) -> Opened:
        yield Unchecked(Reason.UNREADABLE, f"{kind} archive at {where}: not decoded")

    return opener


OPENERS: dict[str, Opener] = {
    **{kind: _undecoded(kind) for kind in UNDECODED.values()},
    "zip": open_zip,
    "iso": formats.open_iso,
    "tnef": formats.open_tnef,
    "binhex": formats.open_binhex,
    "tar": open_tar,
    "gzip": _compressed("gzip", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
                        (".tgz", ".gz", ".z")),
    "bzip2": _compressed("bzip2", bz2.BZ2Decompressor, (".tbz", ".bz2")),
    "xz": _compressed("xz", lzma.LZMADecompressor, (".txz", ".xz")),
}
