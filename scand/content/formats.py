"""Containers that mail carries and the stdlib does not open: ISO 9660, TNEF, BinHex.

Each opener yields members (name and bytes) the way the archive openers do.
They read names first, because names are what the policy needs and what a
worm changes; a structure they cannot follow is ``-1:unreadable``, never 0.

* **ISO 9660** (disk images mailed as ``.iso``/``.img``, opened by Windows
  with a double click): the primary and Joliet directory trees.
* **TNEF** (``winmail.dat``, Outlook's rich text wrapper): attachment titles,
  long file names from the MAPI properties, and attachment data.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from scand.content import textblocks
from scand.content.parts import CHUNK, Budget, LimitHit, Member
from scand.events import Reason, Unchecked

Opened = Iterator[Member | Unchecked]

ISO_SECTOR = 2048
ISO_MAGIC_AT = 16 * ISO_SECTOR + 1  # "CD001" in the first volume descriptor
# Directory records followed, at most (a loop in the tree cannot spin forever).
ISO_MAX_DIRS = 2_000
TNEF_MAGIC = b"\x78\x9f\x3e\x22"
ATT_TITLE = 0x00018010
ATT_DATA = 0x0006800F
ATT_REND = 0x00069002  # attAttachRenddata: a new attachment starts
ATT_MAPI = 0x00069005  # attAttachment: MAPI properties of the attachment
PR_LONG_FILENAME = 0x3707
PR_FILENAME = 0x3704


def is_iso(data: bytes) -> bool:
    return data[ISO_MAGIC_AT : ISO_MAGIC_AT + 5] == b"CD001"


def open_iso(data: bytes, names: tuple[str, ...], budget: Budget, names_only: bool,
             where: str) -> Opened:
    trees: list[tuple[int, int, bool]] = []
    sector = 16
    while (sector + 1) * ISO_SECTOR <= len(data):  # to the terminator, however far
        vd = data[sector * ISO_SECTOR : (sector + 1) * ISO_SECTOR]
        if vd[1:6] != b"CD001" or vd[0] == 255:
            break
        if vd[0] in (1, 2):  # primary, supplementary (Joliet: UCS-2 names)
            root = vd[156:190]
            joliet = vd[0] == 2 and vd[88:90] == b"%/"
            trees.append((struct.unpack_from("<I", root, 2)[0],
                          struct.unpack_from("<I", root, 10)[0], joliet))
        sector += 1
    if not trees:
        yield Unchecked(Reason.UNREADABLE, f"iso image at {where}: no volume descriptor")
        return
    seen: set[int] = set()
    for extent, size, joliet in trees:
        if extent in seen:
            continue  # a second descriptor for a tree already read
        seen.add(extent)
        yield from _iso_dir(data, extent, size, joliet, "", budget, seen, where)


def _iso_dir(data: bytes, extent: int, size: int, joliet: bool, prefix: str,
             budget: Budget, seen: set[int], where: str) -> Opened:
    stack = [(extent, size, prefix)]
    dirs = 0
    files: set[tuple[int, int]] = set()
    produced = 0
    while stack:
        extent, size, prefix = stack.pop()
        dirs += 1
        if dirs > ISO_MAX_DIRS:
            yield Unchecked(Reason.TOO_MANY_FILES, f"iso image at {where}: directories")
            return
        block = data[extent * ISO_SECTOR : extent * ISO_SECTOR + size]
        pos = 0
        while pos < len(block):
            length = block[pos]
            if length == 0:  # records do not cross sectors: skip to the next one
                pos = (pos // ISO_SECTOR + 1) * ISO_SECTOR
                continue
            rec = block[pos : pos + length]
            pos += length
            if len(rec) < 34:
                break
            f_extent, f_size = struct.unpack_from("<I", rec, 2)[0], struct.unpack_from(
                "<I", rec, 10)[0]
            raw = rec[33 : 33 + rec[32]]
            if raw in (b"\x00", b"\x01"):
                continue  # "." and ".."
            name = raw.decode("utf-16-be", "replace") if joliet else raw.decode("latin-1")
            name = prefix + name.split(";", 1)[0]
            if rec[25] & 0x02:
                if f_extent not in seen:
                    seen.add(f_extent)
                    stack.append((f_extent, f_size, name + "/"))
                continue
            budget.part()
            if (f_extent, f_size) in files:  # the same file under another name
                yield Member(name, None)
                continue
            files.add((f_extent, f_size))
            body = data[f_extent * ISO_SECTOR : f_extent * ISO_SECTOR + f_size]
            budget.grow(len(body))
            produced += len(body)
            if produced > 2 * len(data) + CHUNK:  # files that overlap each other
                raise LimitHit(Reason.TOO_LARGE, f"iso image at {where}: files overlap")
            yield Member(name, body)
            if len(body) < f_size:  # the image ends inside this file
                yield Unchecked(Reason.UNREADABLE, f"iso image at {where}: {name} truncated")


# -- TNEF ------------------------------------------------------------------------------

def is_tnef(data: bytes) -> bool:
    return data.startswith(TNEF_MAGIC)


def open_tnef(data: bytes, names: tuple[str, ...], budget: Budget, names_only: bool,
              where: str) -> Opened:
    pos = 6  # signature, legacy key
    current_names: list[str] = []
    current_data: bytes | None = None
    found = 0
    while pos + 9 <= len(data):
        _level, attr, length = struct.unpack_from("<BII", data, pos)
        body = data[pos + 9 : pos + 9 + length]
        if len(body) < length:
            yield Unchecked(Reason.UNREADABLE, f"tnef at {where}: truncated attribute")
            break
        pos += 9 + length + 2
        if attr == ATT_REND and (current_names or current_data is not None):
            found += 1
            yield from _tnef_member(current_names, current_data, budget)
            current_names, current_data = [], None
        if attr == ATT_TITLE:
            current_names.append(body.split(b"\x00", 1)[0].decode("latin-1"))
        elif attr == ATT_DATA:
            current_data = body
        elif attr == ATT_MAPI:
            current_names += _mapi_names(body)
    if current_names or current_data is not None:
        found += 1
        yield from _tnef_member(current_names, current_data, budget)
    if not found and len(data) > 64:
        # Message-level TNEF without attachments is fine; bodies are rich text.
        return


def _tnef_member(names: list[str], data: bytes | None, budget: Budget) -> Opened:
    budget.part()
    body = data or b""
    budget.grow(len(body))
    unique = tuple(dict.fromkeys(n for n in names if n))
    yield Member(unique[0] if unique else "attachment", body, names=unique)


def _mapi_names(body: bytes) -> list[str]:
    """PR_ATTACH_LONG_FILENAME / PR_ATTACH_FILENAME strings in a MAPI property block.

    The block is searched for the property tags rather than fully parsed: a
    names-only reader must not be stopped by a property type it does not know."""
    out: list[str] = []
    for prop in (PR_LONG_FILENAME, PR_FILENAME):
        for ptype, codec in ((0x001F, "utf-16-le"), (0x001E, "latin-1")):
            tag = struct.pack("<HH", ptype, prop)
            at = body.find(tag)
            while at >= 0 and at + 12 <= len(body):
                size = struct.unpack_from("<I", body, at + 8)[0]
                raw = body[at + 12 : at + 12 + size]  # whole: a cut name loses its suffix
                text = raw.decode(codec, "replace").split("\x00", 1)[0]
                if text:
                    out.append(text)
                at = body.find(tag, at + 4)
    return out


# -- BinHex ----------------------------------------------------------------------------

def open_binhex(data: bytes, names: tuple[str, ...], budget: Budget, names_only: bool,
                where: str) -> Opened:
    for found in textblocks.binhex_blocks(data, bare=True, limit=budget.room()):
        if found is None:
            yield Unchecked(Reason.UNREADABLE, f"binhex at {where}: not decoded")
            continue
        name, forks = found
        for body in forks:
            budget.grow(len(body))
            # ClamAV reads BinHex only at offset 0: hand it the decoded forks as parts.
            yield Member(name or "binhex", body, alt=True)
