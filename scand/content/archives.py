"""Container formats for the walker: one table, and the zip and tar openers.

:data:`FORMATS` holds every container the walker recognises, in the order they
are tried: how to tell one by its bytes, its opener, and the names it goes by.
:func:`sniff`, :data:`OPENERS` and the suffix lists the walker uses are derived
from it, so a new format is one entry plus its cases. Formats recognised but
not decoded here (7z, rar, cab, ...) open to ``-1:unreadable``, never 0.

Openers read incrementally, ``CHUNK`` bytes at a time, checking the walk's
budget (total decoded bytes) and the expansion ratio after each step, so a
bomb is stopped after about a megabyte of output, not after it has filled the
memory cap. An opener yields :class:`Member` items, or an
:class:`Encrypted`/``Unchecked`` finding, and never raises for bad input.
Compressed streams are :mod:`scand.content.streams`; ISO 9660, TNEF and
BinHex :mod:`scand.content.formats`.
"""

from __future__ import annotations

import bz2
import io
import lzma
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from scand.content import formats, streams, textblocks, zipscan
from scand.content.parts import CHUNK, Budget, Encrypted, LimitHit, Member
from scand.content.streams import Opened, Opener
from scand.events import Reason, Unchecked

# Bytes read from a member to sniff whether it is itself a container (an ISO 9660
# volume descriptor starts at 32 KiB).
SNIFF = 34 * 1024
# Zip methods ClamAV 1.4 decodes (stored, deflate, deflate64, implode); members in
# others (bzip2, lzma, ...) are decoded here and handed to it as parts.
ENGINE_ZIP_METHODS = (0, 1, 6, 8, 9)
# Names the walker reads as messages: opened in a names-only walk like containers.
MESSAGE_SUFFIXES = (".eml", ".msg", ".mbox")


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


# -- the table ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Format:
    """A container format. ``detect(data, behind)``: ``data`` is one (``behind``:
    the walker also asks for one behind a stub); ``open``: its opener;
    ``suffixes``: names it goes by (a names-only walk still opens members so
    named: they may hold further names); ``stub_suffixes``: names whose opener
    finds it wherever it is (a zip behind a self-extractor's stub), so it is
    looked for behind a stub in parts so named; ``deep_suffixes``: names of
    images whose magic lies deep (an ISO 9660 descriptor at 32 KiB), read that
    far in a names-only walk; ``decoded``: False for a format only recognised
    (its opener answers -1:unreadable)."""

    kind: str
    detect: Callable[[bytes, bool], bool]
    open: Opener
    suffixes: tuple[str, ...] = ()
    stub_suffixes: tuple[str, ...] = ()
    deep_suffixes: tuple[str, ...] = ()
    decoded: bool = True


def _undecoded(kind: str) -> Opener:
    def opener(data: bytes, names: tuple[str, ...], budget: Budget, names_only: bool,
               where: str) -> Opened:
        yield Unchecked(Reason.UNREADABLE, f"{kind} archive at {where}: not decoded")

    return opener


def _magic(kind: str, *magic: bytes, suffixes: tuple[str, ...] = ()) -> Format:
    """A format recognised by its leading bytes but not decoded here: the built-in
    engine cannot see inside, so it is answered -1:unreadable (clamd decodes it)."""
    return Format(kind, lambda data, _behind: data.startswith(magic), _undecoded(kind),
                  suffixes, decoded=False)


def _is_arj(data: bytes, behind: bool) -> bool:
    # Two bytes alone would match one binary file in 65,536: a plausible header size.
    return data.startswith(b"\x60\xea") and 30 <= int.from_bytes(data[2:4], "little") <= 2600


def _is_tar(data: bytes, behind: bool) -> bool:
    return len(data) >= 512 and (data[257:262] == b"ustar" or _tar_checksum_ok(data))


FORMATS: tuple[Format, ...] = (
    _magic("7z", b"7z\xbc\xaf\x27\x1c"),
    _magic("rar", b"Rar!\x1a\x07"),
    _magic("cab", b"MSCF\x00\x00\x00\x00"),
    Format("arj", _is_arj, _undecoded("arj"), decoded=False),
    _magic("cpio", b"070701", b"070702", b"070707"),
    _magic("szdd", b"SZDD\x88\xf0\x27\x33"),
    # A zip is read wherever its end record is (a search of the last 64 KiB):
    # behind a stub only in binary parts and parts named like zips.
    Format("zip", zipscan.has_zip, open_zip, (".zip", ".jar", ".exe"), stub_suffixes=(
        ".zip", ".jar", ".exe", ".docx", ".xlsx", ".pptx", ".docm", ".xlsm", ".odt", ".ods",
        ".apk", ".epub", ".war", ".ear", ".xpi", ".crx", ".nupkg", ".whl", ".cbz", ".kmz",
        ".3mf", ".vsix", ".appx", ".msix")),
    Format("tnef", lambda data, _behind: formats.is_tnef(data), formats.open_tnef, (".dat",)),
    Format("binhex", lambda data, _behind: textblocks.has_binhex(data[:4096], bare=True),
           formats.open_binhex, (".hqx",)),
    Format("gzip", lambda data, _behind: data.startswith(b"\x1f\x8b"),
           streams.compressed("gzip", lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
                              (".tgz", ".gz", ".z")), (".gz", ".tgz")),
    Format("bzip2", lambda data, _behind: data.startswith(b"BZh") and data[3:4].isdigit(),
           streams.compressed("bzip2", bz2.BZ2Decompressor, (".tbz", ".bz2")),
           (".bz2", ".tbz")),
    Format("xz", lambda data, _behind: data.startswith(b"\xfd7zXZ\x00"),
           streams.compressed("xz", lzma.LZMADecompressor, (".txz", ".xz")), (".xz", ".txz")),
    Format("tar", _is_tar, open_tar, (".tar",)),
    Format("iso", lambda data, _behind: formats.is_iso(data), formats.open_iso,
           (".iso", ".img"), deep_suffixes=(".iso", ".img", ".udf", ".bin", ".vhd", ".vhdx",
                                            ".dmg", ".toast")),
)
OPENERS: dict[str, Opener] = {f.kind: f.open for f in FORMATS}
CONTAINER_SUFFIXES = tuple(s for f in FORMATS for s in f.suffixes) + MESSAGE_SUFFIXES
STUB_SUFFIXES = tuple(s for f in FORMATS for s in f.stub_suffixes)
IMAGE_SUFFIXES = tuple(s for f in FORMATS for s in f.deep_suffixes)


def sniff(data: bytes, behind: bool = True) -> str | None:
    """The container kind of ``data`` (the first of :data:`FORMATS` it is), or
    None. ``behind``: also look for a zip behind a stub (an end record near the
    end; a search of the last 64 KiB, so the walker asks only for binary parts and
    parts named like zips)."""
    for f in FORMATS:
        if f.detect(data, behind):
            return f.kind
    return None
