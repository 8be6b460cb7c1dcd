"""Adversarial mail built in code: evasions of a MIME walker, and clean look-alikes.

Issue 12 acceptance 1. Every case is a whole message (bytes) plus the classes
of reply that are right for it:

* ``virus``: ``1:<signature name>`` (not ``1:Banned.``);
* ``banned:<prefix>``: ``1:Banned.<prefix>...`` (``banned:`` = any policy rule);
* ``unchecked:<reason>``: ``-1:<reason>...`` (``unchecked:`` = any reason);
* ``clean``: exactly ``0``.

A case lists every right class (an EICAR inside a banned name may come back as
either). ``unchecked`` is listed only where the payload cannot be reached by a
walker that reads every interpretation (message/partial fragments, a multipart
whose boundary never occurs).

Each family is one way a message can be read differently by the scanner and
by the client that shows it, found in how Thunderbird (Mozilla's
nsMIMEHeaderParamImpl and its test_MIME_params.js: ``filename*`` wins in either
order, RFC 2231 continuations win over a plain value, the first of two plain
values wins), Outlook (RFC 2047 words in parameters, TNEF winmail.dat),
Postfix (passes obsolete header syntax through untouched) and ClamAV
(libclamav/mbox.c: its own lenient header and boundary parsing, yEnc, BinHex)
parse mail, and in the obsolete syntax RFC 5322 section 4.5 still asks
receivers to accept (``field-name WSP* ":"``).

The payload is never reachable by a plain byte search of the raw message:
EICAR is always encoded (base64, QP, uuencode, yEnc, BinHex, zip, tar, ISO
9660, TNEF, ...), and it is built from two halves so that this file is not
itself a test virus.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
import tarfile
import urllib.parse
import zipfile
import zlib
from dataclasses import dataclass

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
# A harmless "program": the banned-name cases carry this, never EICAR.
MZ = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 48 + b"harmless stub"
TEXT = b"Quarterly figures attached, nothing to see here.\n" * 3
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
       b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
       b"\x00\x00\x00\x00IEND\xaeB`\x82")
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"

VIRUS = "virus"
CLEAN = "clean"
BANNED = "banned:"
UNCHECKED = "unchecked:"

FAMILIES = ("header-syntax", "parameters", "boundaries", "transfer-encoding", "text-encodings",
            "message-partial", "containers", "policy", "html-smuggling", "robustness",
            "look-alike")


@dataclass(frozen=True)
class Case:
    id: str
    family: str
    description: str
    message: bytes
    expected: frozenset[str]
    payload: str  # "eicar", "name" (a banned name on harmless bytes), "both" or "none"

    @property
    def evasion(self) -> bool:
        return self.family != "look-alike"

    def expected_clamd(self) -> frozenset[str]:
        """clamd names viruses its own way, and what it cannot decode scand's walker may
        hand it part by part: for the clamd engine any non-0 class is right where the
        built-in engine expects one, and only 0 for a look-alike."""
        if self.expected == {CLEAN}:
            return self.expected
        return frozenset({VIRUS, BANNED, UNCHECKED})


def matches(reply: str, expected: frozenset[str]) -> bool:
    """Does a reply line (without LF) fall in one of the expected classes?"""
    for cls in expected:
        if cls == CLEAN and reply == "0":
            return True
        if cls == VIRUS and reply.startswith("1:") and not reply.startswith("1:Banned."):
            return True
        if cls.startswith(BANNED) and reply.startswith("1:Banned." + cls[len(BANNED):]):
            return True
        if cls.startswith(UNCHECKED) and reply.startswith("-1:" + cls[len(UNCHECKED):]):
            return True
    return False


# -- message builders -----------------------------------------------------------------

def b64(data: bytes) -> bytes:
    return base64.encodebytes(data)


def top(subject: str, extra: str = "") -> bytes:
    mid = zlib.crc32(subject.encode())
    return (f"From: alice@example.org\nTo: bob@example.net\nSubject: {subject}\n"
            f"Date: Tue, 24 Nov 2026 10:00:00 +0000\nMessage-ID: <{mid}@ex.org>\n"
            f"MIME-Version: 1.0\n{extra}").encode()


def mixed(part_head: str | bytes, body: bytes, *, boundary: str = "=_b1",
          ctype: str | None = None, subject: str = "see attached") -> bytes:
    """A multipart/mixed message: a text part, then one part with raw headers and body."""
    head = part_head.encode("latin-1") if isinstance(part_head, str) else part_head
    ctype = ctype or f'Content-Type: multipart/mixed; boundary="{boundary}"'
    mark = boundary.encode("latin-1")
    return (top(subject) + ctype.encode("latin-1") + b"\n\nThis is a MIME message.\n\n--"
            + mark + b"\nContent-Type: text/plain; charset=utf-8\n\nPlease see the attachment.\n"
            + b"--" + mark + b"\n" + head.rstrip(b"\n") + b"\n\n" + body.rstrip(b"\n")
            + b"\n--" + mark + b"--\n")


def single(headers: str | bytes, body: bytes, subject: str = "single") -> bytes:
    """A message whose top-level entity is the payload."""
    head = headers.encode("latin-1") if isinstance(headers, str) else headers
    return top(subject) + head.rstrip(b"\n") + b"\n\n" + body


def b64_att(name_headers: str, data: bytes = EICAR,
            ctype: str = "application/octet-stream") -> bytes:
    """An attachment part (headers + base64 body) whose name headers are given raw."""
    return mixed(f"Content-Type: {ctype}\n{name_headers}\nContent-Transfer-Encoding: base64",
                 b64(data))


def qp(data: bytes, width: int = 20) -> bytes:
    """Quoted-printable that hexes every non-alphanumeric byte, soft-broken often."""
    enc = "".join(chr(c) if chr(c).isalnum() else f"={c:02X}" for c in data)
    lines, line = [], ""
    for tok in _qp_tokens(enc):
        if len(line) + len(tok) > width:
            lines.append(line + "=")
            line = ""
        line += tok
    lines.append(line)
    return "\n".join(lines).encode() + b"\n"


def _qp_tokens(enc: str) -> list[str]:
    out, i = [], 0
    while i < len(enc):
        step = 3 if enc[i] == "=" else 1
        out.append(enc[i : i + step])
        i += step
    return out


def uu(data: bytes, name: str, mode: str = "644") -> bytes:
    lines = [binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45)]
    return f"begin {mode} {name}\n".encode() + b"".join(lines) + b"`\nend\n"


def yenc(data: bytes, name: str, line: int = 128) -> bytes:
    """yEnc 1.3 single-part: every byte + 42, critical ones escaped with '='."""
    out, cur = bytearray(), bytearray()
    for byte in data:
        c = (byte + 42) % 256
        if c in (0, 9, 10, 13, 32, 46, 61):
            cur += bytes([61, (c + 64) % 256])
        else:
            cur.append(c)
        if len(cur) >= line:
            out += cur + b"\n"
            cur.clear()
    if cur:
        out += cur + b"\n"
    crc = zlib.crc32(data)
    return (f"=ybegin line={line} size={len(data)} name={name}\n".encode() + bytes(out)
            + f"=yend size={len(data)} crc32={crc:08x}\n".encode())


def yenc_part(data: bytes, name: str) -> bytes:
    crc = zlib.crc32(data)
    body = yenc(data, name).split(b"\n", 1)[1].rsplit(b"=yend", 1)[0]
    return (f"=ybegin part=1 total=1 line=128 size={len(data)} name={name}\n"
            f"=ypart begin=1 end={len(data)}\n").encode() + body + (
            f"=yend size={len(data)} part=1 pcrc32={crc:08x} crc32={crc:08x}\n").encode()


_HQX = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"


def binhex(name: str, data: bytes, rsrc: bytes = b"") -> bytes:
    """BinHex 4.0: header, data fork and resource fork with CRCs, 0x90 RLE, 6-bit text."""
    def crc(chunk: bytes) -> bytes:
        return struct.pack(">H", binascii.crc_hqx(chunk + b"\0\0", 0))

    raw_name = name.encode("latin-1")
    head = (bytes([len(raw_name)]) + raw_name + b"\0" + b"TEXTttxt" + b"\0\0"
            + struct.pack(">II", len(data), len(rsrc)))
    stream = head + crc(head) + data + crc(data) + rsrc + crc(rsrc)
    rle = stream.replace(b"\x90", b"\x90\x00")
    chars = bytearray()
    for i in range(0, len(rle), 3):
        group = rle[i : i + 3]
        bits = int.from_bytes(group.ljust(3, b"\0"), "big")
        for k in range(len(group) + 1):
            chars.append(_HQX[(bits >> (18 - 6 * k)) & 63])
    text = b":" + bytes(chars) + b":"
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return b"(This file must be converted with BinHex 4.0)\n" + b"\n".join(lines) + b"\n"


# -- containers --------------------------------------------------------------------

def zipped(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def zipped_with(name: str, data: bytes, *, method: int = zipfile.ZIP_DEFLATED,
                zip64_local: bool = False) -> bytes:
    """One member, with a chosen compression method, or zip64 sizes in its local header."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        if zip64_local:
            with z.open(name, "w", force_zip64=True) as member:
                member.write(data)
        else:
            z.writestr(name, data)
    return buf.getvalue()


def pax_tar(ustar_name: str, pax_path: str, data: bytes) -> bytes:
    """A pax tar whose extended header names the member differently from the ustar name."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo(ustar_name)
        info.size = len(data)
        info.mtime = 1_700_000_000
        info.pax_headers = {"path": pax_path}
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


DOS_DATE = (46 << 9) | (1 << 5) | 1  # 2026-01-01


def raw_zip(entries: list[tuple[bytes, bytes, bytes, bytes]], *, deflate: bool = False) -> bytes:
    """A zip written by hand: (local name, central name, data, extra field) per member,
    stored, or deflated so that the member's bytes are not readable in place."""
    local, central = bytearray(), bytearray()
    method = 8 if deflate else 0
    for lname, cname, data, extra in entries:
        crc = zlib.crc32(data)
        if deflate:
            packer = zlib.compressobj(9, zlib.DEFLATED, -15)
            packed = packer.compress(data) + packer.flush()
        else:
            packed = data
        offset = len(local)
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, DOS_DATE, crc,
                             len(packed), len(data), len(lname), len(extra))
        local += lname + extra + packed
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0,
                               DOS_DATE, crc, len(packed), len(data),
                               len(cname), len(extra), 0, 0, 0, 0, offset)
        central += cname + extra
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries),
                       len(central), len(local), 0)
    return bytes(local + central + eocd)


def unicode_path_extra(header_name: bytes, real: str) -> bytes:
    """Info-ZIP Unicode Path extra field (0x7075): version 1, CRC of the header name."""
    body = b"\x01" + struct.pack("<I", zlib.crc32(header_name)) + real.encode()
    return struct.pack("<HH", 0x7075, len(body)) + body


def tarred(members: dict[str, bytes], *, v7: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            t.addfile(info, io.BytesIO(data))
    raw = bytearray(buf.getvalue())
    if v7:  # no "ustar" magic: zero everything past the v7 fields, fix the checksum
        pos = 0
        while pos + 512 <= len(raw) and raw[pos : pos + 512].strip(b"\0"):
            size = int(raw[pos + 124 : pos + 136].strip(b"\0 ") or b"0", 8)
            raw[pos + 257 : pos + 500] = bytes(243)
            raw[pos + 148 : pos + 156] = b" " * 8
            raw[pos + 148 : pos + 156] = b"%06o\0 " % sum(raw[pos : pos + 512])
            pos += 512 + (size + 511) // 512 * 512
    return bytes(raw)


def _both16(n: int) -> bytes:
    return struct.pack("<H", n) + struct.pack(">H", n)


def _both32(n: int) -> bytes:
    return struct.pack("<I", n) + struct.pack(">I", n)


def _dir_record(name: bytes, lba: int, size: int, is_dir: bool) -> bytes:
    body = (bytes([0]) + _both32(lba) + _both32(size) + bytes([126, 11, 24, 10, 0, 0, 0])
            + bytes([2 if is_dir else 0, 0, 0]) + _both16(1) + bytes([len(name)]) + name)
    if len(name) % 2 == 0:
        body += b"\0"
    return bytes([len(body) + 1]) + body


def iso9660(files: dict[str, bytes]) -> bytes:
    """A minimal ISO 9660 image: one primary volume descriptor, files in the root."""
    sector = 2048
    names = list(files)
    first = 21
    lbas, lba = [], first
    for name in names:
        lbas.append(lba)
        lba += max(1, (len(files[name]) + sector - 1) // sector)
    total = lba
    root = _dir_record(b"\0", 20, sector, True) + _dir_record(b"\1", 20, sector, True)
    for name, at in zip(names, lbas, strict=True):
        root += _dir_record(name.encode(), at, len(files[name]), False)
    root_record = _dir_record(b"\0", 20, sector, True)
    path_l = bytes([1, 0]) + struct.pack("<I", 20) + struct.pack("<H", 1) + b"\0\0"
    path_m = bytes([1, 0]) + struct.pack(">I", 20) + struct.pack(">H", 1) + b"\0\0"
    pvd = bytearray(sector)
    pvd[0:8] = b"\x01CD001\x01\x00"
    pvd[8:40] = b"LINUX".ljust(32)
    pvd[40:72] = b"INVOICES".ljust(32)
    pvd[80:88] = _both32(total)
    pvd[120:124] = _both16(1)
    pvd[124:128] = _both16(1)
    pvd[128:132] = _both16(sector)
    pvd[132:140] = _both32(len(path_l))
    pvd[140:144] = struct.pack("<I", 18)
    pvd[148:152] = struct.pack(">I", 19)
    pvd[156 : 156 + len(root_record)] = root_record
    pvd[190:813] = b" " * 623
    pvd[813:881] = b"0" * 16 + b"\0" + b"0" * 16 + b"\0" + b"0" * 16 + b"\0" + b"0" * 16 + b"\0"
    pvd[881] = 1
    term = bytearray(sector)
    term[0:7] = b"\xffCD001\x01"
    image = bytearray(sector * 16) + pvd + term
    image += path_l.ljust(sector, b"\0") + path_m.ljust(sector, b"\0")
    image += root.ljust(sector, b"\0")
    for name in names:
        data = files[name]
        image += data.ljust(max(1, (len(data) + sector - 1) // sector) * sector, b"\0")
    return bytes(image)


def _tnef_attr(level: int, attr: int, data: bytes) -> bytes:
    return (bytes([level]) + struct.pack("<II", attr, len(data)) + data
            + struct.pack("<H", sum(data) & 0xFFFF))


def tnef(title: str, data: bytes) -> bytes:
    """winmail.dat: version, codepage, one attachment with a title and its data."""
    out = struct.pack("<IH", 0x223E9F78, 0x1234)
    out += _tnef_attr(1, 0x00089006, struct.pack("<I", 0x00010000))  # attTnefVersion
    out += _tnef_attr(1, 0x00069007, struct.pack("<II", 1252, 0))  # attOemCodepage
    out += _tnef_attr(1, 0x00078008, b"IPM.Microsoft Mail.Note\0")  # attMessageClass
    out += _tnef_attr(2, 0x00069002, struct.pack("<HIIHHI", 1, 0xFFFFFFFF, 0, 0, 0, 0))
    out += _tnef_attr(2, 0x00018010, title.encode("latin-1") + b"\0")  # attAttachTitle
    out += _tnef_attr(2, 0x0006800F, data)  # attAttachData
    return out


# -- the corpus --------------------------------------------------------------------

E = frozenset({VIRUS})
EB = frozenset({VIRUS, BANNED})


def ban(prefix: str) -> frozenset[str]:
    return frozenset({BANNED + prefix})


def _att_headers(ctype: str = "application/octet-stream", name: str = "data.bin",
                 cte: str = "base64") -> list[str]:
    return [f'Content-Type: {ctype}; name="{name}"',
            f'Content-Disposition: attachment; filename="{name}"',
            f"Content-Transfer-Encoding: {cte}"]


def header_syntax() -> list[Case]:
    fam = "header-syntax"
    out: list[Case] = []
    breaks = {
        "space-before-colon": "X-Mailer : Outlook 16.0",
        "tab-before-colon": "X-Mailer\t: Outlook 16.0",
        "no-colon-line": "this line is not a header",
        "nul-in-name": "X-Trace\x00: 1",
        "8bit-name": "X-Pr\xfcfung: ok",
        "empty-name": ": orphan value",
        "space-in-name": "X Mailer: Outlook",
    }
    for key, line in breaks.items():
        heads = _att_headers()
        out.append(Case(f"hdr-{key}-eicar", fam,
                        f"'{line!r}' before Content-Type/CTE of an EICAR part",
                        mixed("\n".join([line, *heads]), b64(EICAR)), E, "eicar"))
        heads = _att_headers(name="invoice.exe")
        out.append(Case(f"hdr-{key}-name", fam, f"'{line!r}' before the headers naming .exe",
                        mixed("\n".join([line, *heads]), b64(MZ)), ban("Extension.exe"),
                        "name"))
    out += [
        Case("hdr-ctype-space-colon", fam, "Content-Type : (space before colon) names .exe",
             mixed('Content-Type : application/octet-stream; name="run.exe"\n'
                   "Content-Transfer-Encoding: base64", b64(MZ)), ban("Extension.exe"), "name"),
        Case("hdr-cte-space-colon", fam, "Content-Transfer-Encoding : base64 (obsolete syntax)",
             mixed("Content-Type: application/octet-stream\nContent-Transfer-Encoding : base64",
                   b64(EICAR)), E, "eicar"),
        Case("hdr-cd-space-colon", fam, "Content-Disposition\t: attachment; filename=x.scr",
             mixed("Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
                   'Content-Disposition\t: attachment; filename="x.scr"', b64(MZ)),
             ban("Extension.scr"), "name"),
        Case("hdr-top-space-colon", fam,
             "top-level 'Subject : x' before the multipart Content-Type",
             b"From: a@example.org\nSubject : hello\nMIME-Version: 1.0\n"
             + b'Content-Type: multipart/mixed; boundary="zz"\n\n--zz\n'
             + "\n".join(_att_headers()).encode() + b"\n\n" + b64(EICAR) + b"--zz--\n",
             E, "eicar"),
        Case("hdr-no-blank-line", fam, "part headers run straight into the base64 body",
             mixed("\n".join(_att_headers()) + "\n" + b64(EICAR).decode(), b""), E, "eicar"),
        Case("hdr-blank-line-with-space", fam, "header block ended by a line holding a space",
             mixed("\n".join(_att_headers()) + "\n \n" + b64(EICAR).decode(), b""), E,
             "eicar"),
        Case("hdr-bare-cr", fam, "a whole message with bare CR line ends",
             mixed("\n".join(_att_headers()), b64(EICAR)).replace(b"\n", b"\r"), E, "eicar"),
        Case("hdr-dup-ctype", fam, "two Content-Type headers: text/plain, then the named one",
             mixed("Content-Type: text/plain\n" "Content-Type: application/octet-stream; "
                   'name="tool.exe"\nContent-Transfer-Encoding: base64', b64(MZ)),
             ban("Extension.exe"), "name"),
        Case("hdr-dup-cte", fam, "two CTE headers: 7bit, then base64",
             mixed("Content-Type: application/octet-stream\nContent-Transfer-Encoding: 7bit\n"
                   "Content-Transfer-Encoding: base64", b64(EICAR)), E, "eicar"),
        Case("hdr-first-line-continuation", fam, "part headers start with a folded line",
             mixed(" X-Junk: folded\n" + "\n".join(_att_headers()), b64(EICAR)), E, "eicar"),
        Case("hdr-no-spaces-lowercase", fam, "content-type:...;name=x.exe, no spaces, lower case",
             mixed("content-type:application/octet-stream;name=x.exe\n"
                   "content-transfer-encoding:base64", b64(MZ)), ban("Extension.exe"), "name"),
        Case("hdr-long-line", fam, "a 2000-byte header line before Content-Type",
             mixed("X-Pad: " + "a" * 2000 + "\n" + "\n".join(_att_headers()), b64(EICAR)),
             E, "eicar"),
    ]
    return out


def parameters() -> list[Case]:
    fam = "parameters"
    ct = "Content-Type: application/octet-stream"
    cte = "Content-Transfer-Encoding: base64"
    rows: list[tuple[str, str, str, str]] = [
        ("plain-then-star", "plain filename= then filename*= (RFC 2231 wins)",
         f"{ct}\nContent-Disposition: attachment; filename=\"readme.txt\"; "
         "filename*=utf-8''evil.exe", "Extension.exe"),
        ("star-then-plain", "filename*= then a plain filename=",
         f"{ct}\nContent-Disposition: attachment; filename*=utf-8''evil.exe; "
         'filename="readme.txt"', "Extension.exe"),
        ("plain-then-continuation", "plain filename= next to filename*0/*1 continuations",
         f'{ct}\nContent-Disposition: attachment; filename="readme.txt";\n'
         ' filename*0="ev"; filename*1="il.exe"', "Extension.exe"),
        ("plain-then-ext-continuation", "plain filename= next to filename*0*= continuations",
         f'{ct}\nContent-Disposition: attachment; filename="readme.txt";\n'
         " filename*0*=utf-8''ev; filename*1=il.scr", "Extension.scr"),
        ("name-and-name-star", "name= next to name*= on Content-Type",
         "Content-Type: application/octet-stream; name=\"photo.jpg\"; name*=utf-8''photo.pif",
         "Extension.pif"),
        ("dup-filename", "filename= twice: harmless first, banned second",
         f'{ct}\nContent-Disposition: attachment; filename="readme.txt"; filename="evil.exe"',
         "Extension.exe"),
        ("dup-name", "name= twice on Content-Type",
         'Content-Type: application/octet-stream; name="a.txt"; name="a.vbs"', "Extension.vbs"),
        ("dup-disposition", "two Content-Disposition headers",
         f'{ct}\nContent-Disposition: inline; filename="readme.txt"\n'
         'Content-Disposition: attachment; filename="evil.bat"', "Extension.bat"),
        ("dup-ctype-name", "two Content-Type headers with different name=",
         'Content-Type: text/plain; name="notes.txt"\n'
         'Content-Type: application/octet-stream; name="notes.cmd"', "Extension.cmd"),
        ("filename-on-ctype", "filename= on Content-Type (no Content-Disposition)",
         'Content-Type: application/octet-stream; filename="setup.exe"', "Extension.exe"),
        ("name-on-disposition", "name= on Content-Disposition",
         f'{ct}\nContent-Disposition: attachment; name="setup.exe"', "Extension.exe"),
        ("content-name", "the old Content-Name header",
         f"{ct}\nContent-Name: setup.exe", "Extension.exe"),
        ("x-sun-data-name", "Sun mailtool X-Sun-Data-Name",
         "Content-Type: application/octet-stream\nX-Sun-Data-Type: default\n"
         "X-Sun-Data-Name: payload.scr", "Extension.scr"),
        ("quoted-pair", "backslash quoted-pair inside the quoted name",
         f'{ct}\nContent-Disposition: attachment; filename="evil.e\\xe"', "Extension.exe"),
        ("missing-semicolon", "no ';' between disposition type and filename",
         f'{ct}\nContent-Disposition: attachment filename="evil.exe"', "Extension.exe"),
        ("unquoted-spaces", "unquoted filename with spaces",
         f"{ct}\nContent-Disposition: attachment; filename=my invoice.exe", "Extension.exe"),
        ("param-case", "FILENAME*= in upper case next to filename=",
         f"{ct}\nContent-Disposition: attachment; filename=\"a.txt\"; FILENAME*=UTF-8''a.com",
         "Extension.com"),
        ("continuation-out-of-order", "filename*1 before filename*0, next to filename=",
         f'{ct}\nContent-Disposition: attachment; filename="a.txt"; filename*1="l.exe";'
         ' filename*0="evi"', "Extension.exe"),
        ("star-percent-dot", "RFC 2231 value with a %2E dot, next to filename=",
         f"{ct}\nContent-Disposition: attachment; filename=\"a.txt\"; "
         "filename*=iso-8859-1'de'evil%2Ehta", "Extension.hta"),
        ("rfc2047-in-star-companion", "RFC 2047 word in name= next to harmless filename=",
         'Content-Type: application/octet-stream; name="=?utf-8?B?ZXZpbC5leGU=?="\n'
         'Content-Disposition: attachment; filename="readme.txt"', "Extension.exe"),
        ("space-around-equals", "filename = \"x\" with spaces, after filename=",
         f'{ct}\nContent-Disposition: attachment; filename="a.txt"; filename = "b.lnk"',
         "Extension.lnk"),
        ("utf7-word", "RFC 2047 word in UTF-7 (Outlook decodes it): '+AC4-' is a dot",
         'Content-Type: application/octet-stream; name="=?utf-7?q?evil+AC4-exe?="',
         "Extension.exe"),
        ("utf16-2231", "RFC 2231 value in UTF-16LE next to a harmless filename=",
         f"{ct}\nContent-Disposition: attachment; filename=\"a.txt\"; filename*=utf-16le''"
         + "".join(f"%{b:02X}" for b in "evil.exe".encode("utf-16le")), "Extension.exe"),
        ("double-ext-star", "DoubleExtension only in the filename*= reading",
         f"{ct}\nContent-Disposition: attachment; filename=\"scan.pdf\"; "
         "filename*=utf-8''scan.pdf.exe", "DoubleExtension.pdf.exe"),
    ]
    out = []
    for key, desc, head, prefix in rows:
        out.append(Case(f"par-{key}", fam, desc, mixed(f"{head}\n{cte}", b64(MZ)), ban(prefix),
                        "name"))
    # The same lost names, with EICAR inside: either answer is right.
    for key, desc, head, _ in rows[:3]:
        out.append(Case(f"par-{key}-eicar", fam, desc + ", EICAR inside",
                        mixed(f"{head}\n{cte}", b64(EICAR)), EB, "both"))
    return out


def _att(name: str = "data.bin", data: bytes = EICAR) -> bytes:
    return ("\n".join(_att_headers(name=name)) + "\n\n").encode() + b64(data)


def _multipart(ctype: str, parts: list[bytes], mark: bytes, close: bytes | None = None) -> bytes:
    body = b"preamble\n"
    for p in parts:
        body += b"--" + mark + b"\n" + p.rstrip(b"\n") + b"\n"
    body += (close if close is not None else b"--" + mark + b"--") + b"\n"
    return top("boundaries") + ctype.encode("latin-1") + b"\n\n" + body


def boundaries() -> list[Case]:
    fam = "boundaries"
    text = b"Content-Type: text/plain\n\nhello\n"
    out = [
        Case("bnd-star-and-plain", fam, "boundary= next to boundary*= (the star one is used)",
             _multipart("Content-Type: multipart/mixed; boundary=\"AAA\"; boundary*=''BBB",
                        [text, _att()], b"BBB"), E, "eicar"),
        Case("bnd-two-params-second", fam, "two boundary= params, body uses the second",
             _multipart('Content-Type: multipart/mixed; boundary="AAA"; boundary="BBB"',
                        [text, _att()], b"BBB"), E, "eicar"),
        Case("bnd-two-params-first", fam, "two boundary= params, body uses the first",
             _multipart('Content-Type: multipart/mixed; boundary="BBB"; boundary="AAA"',
                        [text, _att()], b"BBB"), E, "eicar"),
        Case("bnd-folded-in-quotes", fam, "boundary folded inside its quotes (body: unfolded)",
             _multipart('Content-Type: multipart/mixed; boundary="abc\n def"',
                        [text, _att()], b"abc def"), E, "eicar"),
        Case("bnd-folded-in-quotes-joined", fam, "boundary folded inside quotes (body: joined)",
             _multipart('Content-Type: multipart/mixed; boundary="abc\n\tdef"',
                        [text, _att()], b"abcdef"), E, "eicar"),
        Case("bnd-comment-after", fam, "a comment after the quoted boundary value",
             _multipart('Content-Type: multipart/mixed; boundary="CCC" (mime boundary)',
                        [text, _att()], b"CCC"), E, "eicar"),
        Case("bnd-comment-unquoted", fam, "a comment after an unquoted boundary value",
             _multipart("Content-Type: multipart/mixed; boundary=CCC(x)",
                        [text, _att()], b"CCC"), E, "eicar"),
        Case("bnd-8bit", fam, "8-bit (UTF-8) bytes in the boundary",
             _multipart('Content-Type: multipart/mixed; boundary="gr\u00fc\u00dfe"'.encode()
                        .decode("latin-1"), [text, _att()], "grüße".encode()), E, "eicar"),
        Case("bnd-close-extra-dashes", fam, "'--B---' (a close with extra dashes) then a part",
             _multipart('Content-Type: multipart/mixed; boundary="B"',
                        [text], b"B", close=b"--B---\n" + b"--B\n" + _att() + b"--B--"),
             E, "eicar"),
        Case("bnd-nested-reuses-parent", fam, "a nested multipart reusing its parent's boundary",
             _multipart('Content-Type: multipart/mixed; boundary="P"',
                        [text, b'Content-Type: multipart/mixed; boundary="P"\n\n--P\n' + _att()],
                        b"P"), E, "eicar"),
        Case("bnd-never-occurs", fam, "the declared boundary never occurs in the body",
             _multipart('Content-Type: multipart/mixed; boundary="XXX"',
                        [text, _att()], b"YYY"), frozenset({VIRUS, UNCHECKED}), "eicar"),
        Case("bnd-missing-param", fam, "multipart/mixed without any boundary parameter",
             _multipart("Content-Type: multipart/mixed", [text, _att()], b"QQQ"),
             frozenset({VIRUS, UNCHECKED}), "eicar"),
        Case("bnd-dup-ctype-header", fam, "text/plain first, multipart with boundary second",
             _multipart('Content-Type: text/plain\nContent-Type: multipart/mixed; boundary="D"',
                        [text, _att()], b"D"), E, "eicar"),
        Case("bnd-trailing-garbage", fam, "delimiter lines carrying trailing text",
             top("bnd") + b'Content-Type: multipart/mixed; boundary="G"\n\n--G part one\n'
             + text + b"--G part two\n" + _att() + b"--G-- end\n", E, "eicar"),
        Case("bnd-case-of-ctype", fam, "MULTIPART/MIXED and BOUNDARY= in upper case, crlf",
             _multipart('Content-Type: MULTIPART/MIXED; BOUNDARY="U"', [text, _att()], b"U")
             .replace(b"\n", b"\r\n"), E, "eicar"),
        Case("bnd-digest-default-rfc822", fam, "multipart/digest part without Content-Type "
             "(message/rfc822 by default) holding a MIME message",
             top("digest") + b'Content-Type: multipart/digest; boundary="D"\n\n--D\n\n'
             + mixed("\n".join(_att_headers()), b64(EICAR), boundary="in1") + b"--D--\n",
             E, "eicar"),
        Case("bnd-name-in-lost-part", fam, "banned name in a part only the star boundary shows",
             _multipart("Content-Type: multipart/mixed; boundary=\"AAA\"; boundary*=''BBB",
                        [text, _att("run.exe", MZ)], b"BBB"), ban("Extension.exe"), "name"),
        Case("bnd-name-after-extra-dashes", fam, "banned name after a '--B---' close",
             _multipart('Content-Type: multipart/mixed; boundary="B"',
                        [text], b"B", close=b"--B---\n--B\n" + _att("a.pif", MZ) + b"--B--"),
             ban("Extension.pif"), "name"),
    ]
    return out


def transfer_encodings() -> list[Case]:
    fam = "transfer-encoding"
    ct = "Content-Type: application/octet-stream\n"

    def part(cte: str, body: bytes, cid: str, desc: str, extra: str = "") -> Case:
        return Case(f"cte-{cid}", fam, desc, mixed(f"{ct}{extra}Content-Transfer-Encoding: {cte}",
                                                  body), E, "eicar")

    chunks = b"".join(base64.b64encode(EICAR[i : i + 10]) for i in range(0, len(EICAR), 10))
    per_line = b"\n".join(base64.b64encode(EICAR[i : i + 7]) for i in range(0, len(EICAR), 7))
    quoted = qp(EICAR)
    out = [
        part("base64", b"\n".join(chunks[i : i + 76] for i in range(0, len(chunks), 76)),
             "b64-mid-pad", "base64 of 10-byte chunks: '=' padding in mid-stream"),
        part("base64", per_line + b"\n", "b64-pad-every-line", "each line padded base64"),
        part("base64 (comment)", b64(EICAR), "comment", "Content-Transfer-Encoding: base64 (x)"),
        part("base64;", b64(EICAR), "trailing-semicolon", "Content-Transfer-Encoding: base64;"),
        part('"base64"', b64(EICAR), "quoted", 'Content-Transfer-Encoding: "base64"'),
        part("base64", b64(EICAR), "dup-7bit-first", "two CTE headers: 7bit first",
             extra="Content-Transfer-Encoding: 7bit\n"),
        part("base64", b64(EICAR), "dup-qp-first", "two CTE headers: quoted-printable first",
             extra="Content-Transfer-Encoding: quoted-printable\n"),
        part("quoted-printable", b64(EICAR), "dup-b64-first-qp-body",
             "two CTE headers: base64 first, quoted-printable second, base64 body",
             extra="Content-Transfer-Encoding: base64\n"),
        part("x-yencode", yenc(EICAR, "data.bin"), "x-yencode", "Content-Transfer-Encoding: "
             "x-yencode"),
        part("quoted-printable", quoted.replace(b"=\n", b"=  \n"), "qp-soft-space",
             "QP soft breaks followed by spaces (transport padding)"),
        part("quoted-printable", quoted.replace(b"=\n", b"=\t\n"), "qp-soft-tab",
             "QP soft breaks followed by a tab"),
        part("quoted-printable", re.sub(rb"=[0-9A-F]{2}", lambda m: m.group().lower(), quoted),
             "qp-lower-hex",
             "QP with lower-case hex digits"),
        part("base64", b"=\n" + b64(EICAR), "b64-leading-pad", "a stray '=' line first"),
        part("base64", b"!" + b64(EICAR).replace(b"\n", b"\n."), "b64-junk-chars",
             "base64 with junk characters between quads"),
        part("Base64 ", b64(EICAR), "b64-case-space", "CTE 'Base64 ' with odd case and space"),
        part("x-uuencode", uu(EICAR, "data.bin"), "x-uuencode", "Content-Transfer-Encoding: "
             "x-uuencode"),
        part("quoted-printable", quoted.replace(b"\n", b"\r\n"), "qp-crlf",
             "QP with CRLF soft breaks inside an LF message"),
    ]
    inner = (b"--M\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n"
             b"\n" + b64(EICAR) + b"--M--\n")
    out.append(Case("cte-on-multipart", fam, "base64 CTE on a multipart (forbidden, decoded "
                    "by some readers)", single('Content-Type: multipart/mixed; boundary="M"\n'
                                               "Content-Transfer-Encoding: base64", b64(inner)),
                    frozenset({VIRUS, UNCHECKED}), "eicar"))
    out.append(Case("cte-on-rfc822", fam, "base64 CTE on a message/rfc822 part",
                    mixed("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64",
                          b64(mixed("\n".join(_att_headers()), b64(EICAR), boundary="in"))),
                    E, "eicar"))
    out.append(Case("cte-name-yenc", fam, "x-yencode part carrying a banned name",
                    mixed('Content-Type: application/octet-stream; name="x.exe"\n'
                          "Content-Transfer-Encoding: x-yencode", yenc(MZ, "x.exe")),
                    ban("Extension.exe"), "name"))
    return out


def text_encodings() -> list[Case]:
    fam = "text-encodings"
    prose = b"Hi Bob,\n\nhere is the file you asked for.\n\n"
    txt = "Content-Type: text/plain; charset=us-ascii"
    plain = "Content-Type: text/plain\nContent-Transfer-Encoding: base64"
    out = [
        Case("txt-yenc", fam, "yEnc block inside a text/plain body",
             mixed(txt, prose + yenc(EICAR, "data.bin")), E, "eicar"),
        Case("txt-yenc-part", fam, "yEnc =ypart block inside a text body",
             mixed(txt, prose + yenc_part(EICAR, "data.bin")), E, "eicar"),
        Case("txt-yenc-name", fam, "yEnc block naming a banned file",
             mixed(txt, prose + yenc(MZ, "setup.exe")), ban("Extension.exe"), "name"),
        Case("txt-yenc-both", fam, "yEnc block with EICAR and a banned name",
             mixed(txt, prose + yenc(EICAR, "setup.scr")), EB, "both"),
        Case("txt-yenc-no-mime", fam, "yEnc in a non-MIME message body",
             top("yenc", "") + b"\n" + prose + yenc(EICAR, "a.bin"), E, "eicar"),
        Case("txt-yenc-in-b64-text", fam, "yEnc inside a base64-encoded text part",
             mixed(plain, b64(prose + yenc(EICAR, "a.bin"))), E, "eicar"),
        Case("txt-binhex-after-prose", fam, "BinHex 4.0 after a line of prose",
             mixed(txt, prose + binhex("data.bin", EICAR)), E, "eicar"),
        Case("txt-binhex-name", fam, "BinHex naming a banned file, after prose",
             mixed(txt, prose + binhex("install.exe", MZ)), ban("Extension.exe"), "name"),
        Case("txt-binhex-no-mime", fam, "BinHex in a non-MIME body after a greeting",
             top("hqx", "") + b"\n" + prose + binhex("a.bin", EICAR), E, "eicar"),
        Case("txt-binhex-mac-part", fam, "application/mac-binhex40 part with a prose line first",
             mixed("Content-Type: application/mac-binhex40; name=\"a.hqx\"",
                   b"Converted on a Mac.\n" + binhex("a.bin", EICAR)), E, "eicar"),
        Case("txt-binhex-no-banner", fam, "mac-binhex40 part without the '(This file' line",
             mixed('Content-Type: application/mac-binhex40; name="a.hqx"',
                   binhex("a.bin", EICAR).split(b"\n", 1)[1]), E, "eicar"),
        Case("txt-binhex-rsrc", fam, "BinHex with EICAR in the resource fork",
             mixed(txt, prose + binhex("a.bin", TEXT, EICAR)), E, "eicar"),
        Case("txt-uu-begin-base64", fam, "'begin-base64' block (uuencode -m) in text",
             mixed(txt, prose + b"begin-base64 644 data.bin\n" + b64(EICAR) + b"====\n"),
             E, "eicar"),
        Case("txt-uu-name-in-qp", fam, "uuencoded banned name inside a QP text part",
             mixed("Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable",
                   qp(prose + uu(MZ, "run.pif"), 70)), ban("Extension.pif"), "name"),
        Case("txt-uu-in-b64-text", fam, "uuencoded EICAR inside a base64 text part",
             mixed(plain, b64(prose + uu(EICAR, "a.bin"))), E, "eicar"),
        Case("txt-uu-mode-1-digit", fam, "'begin 7 name': a one-digit octal mode",
             mixed(txt, prose + uu(EICAR, "a.bin", mode="7")), E, "eicar"),
        Case("txt-uu-crlf-indented", fam, "uuencode with CRLF lines in an LF message",
             mixed(txt, prose + uu(EICAR, "a.bin").replace(b"\n", b"\r\n")), E, "eicar"),
        # A message inside a text, after a preamble (libclamav's mail parser reads it:
        # scand.content.embedded; tests/content/test_inline_message.py has more).
        Case("txt-inline-message", fam, "a text part: prose, then a whole message",
             mixed(txt, prose + _inner_eicar_message()), E, "eicar"),
        Case("txt-inline-forwarded", fam, "a text part: '-----Original Message-----', "
             "then the message", mixed(txt, b"-----Original Message-----\n"
                                       + _inner_eicar_message()), E, "eicar"),
        Case("txt-inline-no-mime", fam, "a mail without MIME: prose, then a base64 "
             "body's header and body", top("fwd", "") + b"\n" + prose
             + b"Content-Transfer-Encoding: base64\n\n" + b64(EICAR), E, "eicar"),
        Case("txt-inline-in-zip", fam, "a zipped .txt holding prose, then a message",
             mixed('Content-Type: application/zip; name="notes.zip"\n'
                   "Content-Transfer-Encoding: base64",
                   b64(zipped({"notes.txt": prose + _inner_eicar_message()}))), E, "eicar"),
    ]
    return out


def _inner_eicar_message() -> bytes:
    return mixed("\n".join(_att_headers(name="data.bin")), b64(EICAR), boundary="inner")


def message_partial() -> list[Case]:
    fam = "message-partial"
    inner = _inner_eicar_message()
    cut = inner.index(b"\n", len(inner) // 2) + 1
    one, two = inner[:cut], inner[cut:]
    either = frozenset({UNCHECKED, BANNED})
    whole = frozenset({VIRUS, UNCHECKED, BANNED})

    def frag(n: int, total: int | None, body: bytes, pid: str = "p1@ex.org") -> bytes:
        t = f"; total={total}" if total else ""
        return (f'Content-Type: message/partial; id="{pid}"; number={n}{t}\n\n').encode() + body

    named = mixed("\n".join(_att_headers(name="data.exe")), b64(MZ), boundary="inner")
    ncut = named.index(b"\n", len(named) // 2) + 1
    return [
        Case("part-first-of-two", fam, "message/partial 1 of 2 (top level)",
             top("partial") + frag(1, 2, one), either, "eicar"),
        Case("part-second-of-two", fam, "message/partial 2 of 2 (top level)",
             top("partial") + frag(2, 2, two), either, "eicar"),
        Case("part-one-of-one", fam, "message/partial 1 of 1: the whole message",
             top("partial") + frag(1, 1, inner), whole, "eicar"),
        Case("part-both-in-one-mail", fam, "both fragments as parts of one multipart",
             _multipart('Content-Type: multipart/mixed; boundary="F"',
                        [frag(1, 2, one), frag(2, None, two)], b"F"), whole, "eicar"),
        Case("part-attached", fam, "fragment 1 of 3 attached to a normal mail",
             mixed('Content-Type: message/partial; id="x@y"; number=1; total=3', one),
             either, "eicar"),
        Case("part-name-fragment", fam, "fragment holding a banned name's headers",
             top("partial") + frag(1, 2, named[:ncut]), either, "name"),
        Case("part-in-rfc822", fam, "a fragment inside a forwarded message/rfc822",
             mixed("Content-Type: message/rfc822", top("fwd") + frag(1, 2, one)), either,
             "eicar"),
    ]


def _sfx(zip_bytes: bytes, stub: bytes = MZ * 20) -> bytes:
    return stub + zip_bytes


def containers() -> list[Case]:
    fam = "containers"

    def att(name: str, data: bytes) -> bytes:
        return mixed("\n".join(_att_headers(name=name)), b64(data))

    ez = zipped({"readme.txt": EICAR})
    # Container members are gzipped where the container stores bytes as they are
    # (tar, ISO 9660, TNEF): only a reader of the container finds the gzip stream.
    v7 = tarred({"docs/readme.txt": TEXT, "docs/notes.txt.gz": _gzip(EICAR)}, v7=True)
    out = [
        Case("zip-sfx-stub", fam, "zip behind an MZ stub (self-extractor layout)",
             att("update.bin", _sfx(ez)), E, "eicar"),
        Case("zip-sfx-name", fam, "zip behind a stub, member named .exe",
             att("update.bin", _sfx(zipped({"tool.exe": MZ}))), ban("Extension.exe"), "name"),
        Case("zip-pdf-polyglot", fam, "zip appended to a PDF header",
             att("statement.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" * 4 + ez), E, "eicar"),
        Case("zip-jpeg-polyglot", fam, "zip appended to a JPEG",
             att("photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(300) + ez), E,
             "eicar"),
        Case("zip-trailing-junk", fam, "zip followed by junk after its end record",
             att("a.zip", ez + b"\0" * 40 + b"trailing"), E, "eicar"),
        Case("zip-concat-first-hidden", fam, "two zips back to back, EICAR in the first",
             att("a.zip", ez + zipped({"b.txt": TEXT})), E, "eicar"),
        Case("zip-local-only", fam, "zip with local headers but no central directory",
             att("a.zip", raw_zip([(b"e.txt", b"e.txt", EICAR, b"")], deflate=True)
                 .split(b"PK\x01\x02")[0]),
             frozenset({VIRUS, UNCHECKED}), "eicar"),
        Case("zip-unicode-path", fam, "Unicode Path extra (0x7075) names the member .exe",
             att("a.zip", raw_zip([(b"readme.txt", b"readme.txt", MZ,
                                    unicode_path_extra(b"readme.txt", "readme.exe"))])),
             ban("Extension.exe"), "name"),
        Case("zip-unicode-path-double", fam, "0x7075 name with a double extension",
             att("a.zip", raw_zip([(b"scan.pdf", b"scan.pdf", MZ,
                                    unicode_path_extra(b"scan.pdf", "scan.pdf.scr"))])),
             ban("DoubleExtension.pdf.scr"), "name"),
        Case("zip-central-local-differ", fam, "central name readme.txt, local name evil.exe",
             att("a.zip", raw_zip([(b"evil.exe", b"readme.txt", MZ, b"")])),
             ban("Extension.exe"), "name"),
        Case("zip-local-central-differ", fam, "local name readme.txt, central name evil.exe",
             att("a.zip", raw_zip([(b"readme.txt", b"evil.exe", MZ, b"")])),
             ban("Extension.exe"), "name"),
        Case("zip-differ-eicar", fam, "central and local names differ, EICAR inside",
             att("a.zip", raw_zip([(b"x.txt", b"y.txt", EICAR, b"")], deflate=True)), E, "eicar"),
        Case("tar-v7", fam, "v7 tar (no ustar magic) holding EICAR",
             att("backup.tar", v7), E, "eicar"),
        Case("tar-v7-name", fam, "v7 tar with a member named .exe",
             att("backup.tar", tarred({"bin/tool.exe": MZ}, v7=True)), ban("Extension.exe"),
             "name"),
        Case("tar-v7-gz", fam, "gzipped v7 tar holding EICAR",
             att("backup.tgz", _gzip(v7)), E, "eicar"),
        Case("tar-v7-noname", fam, "v7 tar sent as an unnamed octet-stream",
             mixed("Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64",
                   b64(v7)), E, "eicar"),
        Case("iso-name", fam, "ISO 9660 image with INVOICE.EXE;1",
             att("scan.iso", iso9660({"INVOICE.EXE;1": MZ})), ban("Extension.exe"), "name"),
        Case("iso-eicar", fam, "ISO 9660 image with EICAR in README.TXT;1",
             att("scan.iso", iso9660({"README.GZ;1": _gzip(EICAR)})), E, "eicar"),
        Case("iso-as-img", fam, "ISO 9660 image attached as disk.img with a .scr file",
             att("disk.img", iso9660({"PHOTO.SCR;1": MZ, "A.TXT;1": TEXT})),
             ban("Extension.scr"), "name"),
        Case("iso-in-zip", fam, "ISO 9660 image inside a zip",
             att("a.zip", zipped({"disk.iso": iso9660({"RUN.BAT;1": MZ})})),
             ban("Extension.bat"), "name"),
        Case("zip64-local", fam, "deflated member with zip64 sizes in its local header",
             att("a.zip", zipped_with("readme.txt", EICAR, zip64_local=True)), E, "eicar"),
        Case("zip-bzip2", fam, "zip member compressed with bzip2 (method 12)",
             att("a.zip", zipped_with("readme.txt", EICAR, method=zipfile.ZIP_BZIP2)), E,
             "eicar"),
        Case("zip-lzma", fam, "zip member compressed with LZMA (method 14)",
             att("a.zip", zipped_with("readme.txt", EICAR, method=zipfile.ZIP_LZMA)), E,
             "eicar"),
        Case("tar-pax-path-banned", fam, "pax path names .exe, ustar name is harmless",
             att("a.tar", pax_tar("readme.txt", "evil.exe", MZ)), ban("Extension.exe"), "name"),
        Case("tar-ustar-name-banned", fam, "ustar name is .exe, pax path is harmless",
             att("a.tar", pax_tar("evil.exe", "readme.txt", MZ)), ban("Extension.exe"), "name"),
        Case("tnef-title", fam, "winmail.dat whose attachment title is .exe",
             mixed('Content-Type: application/ms-tnef; name="winmail.dat"\n'
                   'Content-Disposition: attachment; filename="winmail.dat"\n'
                   "Content-Transfer-Encoding: base64", b64(tnef("invoice.exe", MZ))),
             ban("Extension.exe"), "name"),
        Case("tnef-double", fam, "winmail.dat title with a double extension",
             mixed('Content-Type: application/ms-tnef; name="winmail.dat"\n'
                   "Content-Transfer-Encoding: base64", b64(tnef("report.pdf.scr", MZ))),
             ban("DoubleExtension.pdf.scr"), "name"),
        Case("tnef-eicar", fam, "winmail.dat with EICAR as attachment data",
             mixed('Content-Type: application/ms-tnef; name="winmail.dat"\n'
                   "Content-Transfer-Encoding: base64", b64(tnef("notes.gz", _gzip(EICAR)))),
             E, "eicar"),
        Case("tnef-8dot3", fam, "winmail.dat with an 8.3 title INVOIC~1.PIF",
             mixed('Content-Type: application/vnd.ms-tnef\n'
                   "Content-Transfer-Encoding: base64", b64(tnef("INVOIC~1.PIF", MZ))),
             ban("Extension.pif"), "name"),
    ]
    return out


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, mtime=0)


def policy_cases() -> list[Case]:
    fam = "policy"
    ct = "Content-Type: application/octet-stream"
    cte = "Content-Transfer-Encoding: base64"
    rows = [
        ("cid-filename", f'{ct}\nContent-Disposition: inline; filename="cid:evil.exe"',
         "Extension.exe", "cid: prefix on a plain .exe name"),
        ("cid-double", f'{ct}; name="cid:x.pdf.exe"',
         "Extension.exe", "cid: exempts DoubleExtension only: Extension still fires"),
        ("cid-upper", f'{ct}; name="CID:run.scr"', "Extension.scr", "CID: in upper case"),
        ("cid-star", f"{ct}\nContent-Disposition: attachment; filename*=utf-8''cid%3Arun.bat",
         "Extension.bat", "cid: prefix inside an RFC 2231 value"),
        ("nul-inside-ext", f"{ct}\nContent-Disposition: attachment; filename*=utf-8''evil.e%00xe",
         "Extension.exe", "NUL inside the extension"),
        ("ctrl-after-ext", f"{ct}\nContent-Disposition: attachment; filename*=utf-8''evil.exe%01",
         "Extension.exe", "control character after the extension"),
        ("del-after-ext", f"{ct}\nContent-Disposition: attachment; filename*=utf-8''evil.exe%7F",
         "Extension.exe", "DEL after the extension"),
        ("nul-rfc2047", f'{ct}; name="=?utf-8?q?run.s=00cr?="', "Extension.scr",
         "NUL in an RFC 2047 word inside the extension"),
        ("tab-inside-ext", f"{ct}\nContent-Disposition: attachment; filename*=utf-8''a.v%09bs",
         "Extension.vbs", "TAB inside the extension"),
        ("rlo", f"{ct}\nContent-Disposition: attachment; filename*=utf-8''photo%E2%80%AEgpj.scr",
         "Extension.scr", "right-to-left override makes .scr look like .jpg"),
        ("ntfs-stream", f'{ct}\nContent-Disposition: attachment; filename="evil.exe::$DATA"',
         "Extension.exe", "NTFS default stream suffix ::$DATA"),
        ("nul-hides-ext", f"{ct}\nContent-Disposition: attachment; "
         "filename*=utf-8''notes.txt%00.exe", "", "NUL between a harmless and a banned "
         "extension"),
    ]
    out = [Case(f"pol-{key}", fam, desc, mixed(f"{head}\n{cte}", b64(MZ)), ban(prefix), "name")
           for key, head, prefix, desc in rows]
    out += [
        Case("pol-zip-cid", fam, "zip member named cid:evil.exe",
             mixed("\n".join(_att_headers(name="a.zip")), b64(zipped({"cid:evil.exe": MZ}))),
             ban("Extension.exe"), "name"),
        Case("pol-zip-nul", fam, "zip member notes.txt<NUL>.exe (zipfile cuts at NUL)",
             mixed("\n".join(_att_headers(name="a.zip")),
                   b64(raw_zip([(b"notes.txt\0.exe", b"notes.txt\0.exe", MZ, b"")]))),
             ban(""), "name"),
        Case("pol-cid-eicar", fam, "cid: name on an EICAR part", mixed(
            f'{ct}; name="cid:image001.exe@01D8"\n{cte}', b64(EICAR)), EB, "both"),
    ]
    return out


def html_smuggling() -> list[Case]:
    fam = "html-smuggling"
    enc = base64.b64encode(EICAR).decode()
    html = "Content-Type: text/html; charset=utf-8"
    zip_uri = base64.b64encode(zipped({"a.txt": EICAR})).decode()
    folded = "\n".join(enc[i : i + 20] for i in range(0, len(enc), 20))
    pct = urllib.parse.quote(EICAR.decode(), safe="")

    def page(inner: str) -> bytes:
        return f"<html><body><p>Your invoice:</p>{inner}</body></html>\n".encode()

    out = [
        Case("html-a-href", fam, "<a href=data:...;base64,...>",
             mixed(html, page(f'<a href="data:application/octet-stream;base64,{enc}">get</a>')),
             E, "eicar"),
        Case("html-a-download", fam, "<a download=invoice.exe href=data:...>",
             mixed(html, page(f'<a download="invoice.exe" '
                              f'href="data:application/octet-stream;base64,{enc}">get</a>')),
             EB, "both"),
        Case("html-iframe", fam, "<iframe src=data:text/plain;base64,...>",
             mixed(html, page(f'<iframe src="data:text/plain;base64,{enc}"></iframe>')),
             E, "eicar"),
        Case("html-embed-charset", fam, "data: URI with a charset parameter before ;base64",
             mixed(html, page(f'<embed src="data:text/plain;charset=utf-8;base64,{enc}">')),
             E, "eicar"),
        Case("html-object-upper", fam, "DATA: and ;BASE64 in upper case",
             mixed(html, page(f'<object data="DATA:APPLICATION/X-TEST;BASE64,{enc}"></object>')),
             E, "eicar"),
        Case("html-folded", fam, "data: URI with newlines inside the base64",
             mixed(html, page(f'<a href="data:application/octet-stream;base64,{folded}">x</a>')),
             E, "eicar"),
        Case("html-js-location", fam, "data: URI of a zip in a script string",
             mixed(html, page(f"<script>location='data:application/zip;base64,{zip_uri}'"
                              "</script>")), E, "eicar"),
        Case("html-qp-part", fam, "data: URI in a quoted-printable HTML part",
             mixed(f"{html}\nContent-Transfer-Encoding: quoted-printable",
                   qp(page(f'<a href="data:application/octet-stream;base64,{enc}">x</a>'), 70)),
             E, "eicar"),
        Case("html-b64-attachment", fam, "data: URI in a base64 page.html attachment",
             mixed(f'{html}; name="page.html"\nContent-Transfer-Encoding: base64',
                   b64(page(f'<a href="data:;base64,{enc}">x</a>'))), E, "eicar"),
        Case("html-top-level", fam, "a top-level text/html message with a data: URI",
             single(html, page(f'<img src="data:image/png;base64,{enc}">')), E, "eicar"),
        Case("html-entities", fam, "data&#58; and &#43; written as HTML character references",
             mixed(html, page('<a href="data&#58;application/octet-stream;base64,'
                              + enc.replace("+", "&#43;") + '">x</a>')), E, "eicar"),
        Case("html-download-name", fam, "<a download=invoice.exe> on a data: URI of a program",
             mixed(html, page('<a download="invoice.exe" href="data:application/octet-stream;'
                              f'base64,{base64.b64encode(MZ).decode()}">x</a>')),
             ban("Extension.exe"), "name"),
        Case("html-percent", fam, "data: URI percent-encoded (no base64)",
             mixed(html, page(f'<a href="data:application/octet-stream,{pct}">x</a>')),
             E, "eicar"),
    ]
    return out


def robustness() -> list[Case]:
    fam = "robustness"
    ct = "Content-Type: application/octet-stream"
    cte = "Content-Transfer-Encoding: base64"
    rows = [
        ("b64-word-bad-length", '"=?utf-8?b?Z?=evil.exe"', MZ, ban("Extension.exe"), "name"),
        ("b64-word-bad-length-eicar", '"=?utf-8?b?Z?=.dat"', EICAR, E, "eicar"),
        ("b64-word-5-chars", '"=?utf-8?b?ZXZpb?=.exe"', MZ, ban("Extension.exe"), "name"),
        ("unknown-charset", '"=?x-no-such?q?evil.exe?="', MZ, ban("Extension.exe"), "name"),
        ("unknown-encoding", '"=?utf-8?x?abc?= a.exe"', MZ, ban("Extension.exe"), "name"),
        ("good-then-bad-word", '"=?utf-8?q?a.exe?= =?utf-8?b?Z?="', MZ, ban("Extension.exe"),
         "name"),
        ("unterminated", '"=?utf-8?q?evil.exe"', MZ, ban(""), "name"),
        ("bad-q-hex", '"=?utf-8?q?a=ZZ.exe?="', MZ, ban(""), "name"),
        ("language-in-word", '"=?utf-8*en?q?evil.exe?="', MZ, ban("Extension.exe"), "name"),
        ("b64-word-eicar-on-ctype", None, EICAR, E, "eicar"),
    ]
    out = []
    for key, value, data, expected, payload in rows:
        if value is None:
            head = f'{ct}; name="=?utf-8?b?QQ?="\nContent-Disposition: attachment'
        else:
            head = f"{ct}\nContent-Disposition: attachment; filename={value}"
        out.append(Case(f"rob-{key}", fam, f"malformed RFC 2047 word in a name ({key})",
                        mixed(f"{head}\n{cte}", b64(data)), expected, payload))
    return out


def look_alikes() -> list[Case]:
    fam = "look-alike"
    c = frozenset({CLEAN})
    ct = "Content-Type: application/octet-stream"
    cte = "Content-Transfer-Encoding: base64"
    html = "Content-Type: text/html; charset=utf-8"
    png_uri = base64.b64encode(PNG).decode()
    gif_uri = base64.b64encode(GIF).decode()
    text = b"Content-Type: text/plain\n\nhello\n"

    def named(head: str, data: bytes = TEXT) -> bytes:
        return mixed(f"{head}\n{cte}", b64(data))

    def att(name: str, data: bytes) -> bytes:
        return mixed("\n".join(_att_headers(name=name)), b64(data))

    rows: list[tuple[str, str, bytes]] = [
        ("space-colon-plain", "X-Mailer : x in a plain text mail",
         top("hi", "X-Mailer : Foo 1.0\nContent-Type: text/plain\n") + b"\nLunch at noon?\n"),
        ("dup-subject", "two Subject headers", top("a", "Subject: b\n") + b"\nhello\n"),
        ("star-and-plain-same", "filename= and filename*= both harmless",
         named(f"{ct}\nContent-Disposition: attachment; filename=\"report.pdf\"; "
               "filename*=utf-8''report.pdf", b"%PDF-1.4\n")),
        ("cid-dotted-inline", "cid: inline image name with dots",
         named('Content-Type: image/png; name="cid:logo.v2.png@01D9"', PNG)),
        ("cid-exe-png", "cid: name ending .png after an .exe-looking piece",
         named('Content-Type: image/png; name="cid:image001.exe.png@01D9"', PNG)),
        ("exe-dot-pdf", "setup.exe.pdf: the last extension decides",
         att("setup.exe.pdf", b"%PDF-1.4\n%%EOF\n")),
        ("bat-dot-txt", "install.bat.txt", att("install.bat.txt", b"echo hello\n")),
        ("zip-of-text", "a zip of two text files", att("docs.zip", zipped(
            {"a.txt": TEXT, "b/c.csv": b"1,2,3\n"}))),
        ("sfx-stub-text", "a zip behind an MZ stub holding only text",
         att("update.bin", _sfx(zipped({"readme.txt": TEXT})))),
        ("tar-v7-text", "a v7 tar of text files", att("notes.tar",
                                                     tarred({"n.txt": TEXT}, v7=True))),
        ("iso-text", "an ISO 9660 image with a text file",
         att("cd.iso", iso9660({"README.TXT;1": TEXT}))),
        ("tnef-text", "winmail.dat with a text attachment",
         named('Content-Type: application/ms-tnef; name="winmail.dat"', tnef("notes.txt", TEXT))),
        ("unicode-path-harmless", "zip with a 0x7075 name that is harmless",
         att("a.zip", raw_zip([(b"bersicht.txt", b"bersicht.txt", TEXT,
                                unicode_path_extra(b"bersicht.txt", "Übersicht.txt"))]))),
        ("data-uri-png", "HTML with a data: PNG image",
         mixed(html, f'<img src="data:image/png;base64,{png_uri}">\n'.encode())),
        ("data-uri-gif", "HTML with a data: GIF image",
         mixed(html, f'<p><img alt="x" src="data:image/gif;base64,{gif_uri}"></p>\n'.encode())),
        ("data-word-prose", "HTML mentioning 'data:' in prose",
         mixed(html, b"<p>Fill in the data: name, date; base64, hex are fine.</p>\n")),
        ("qp-equals", "QP text full of = signs",
         mixed("Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable",
               b"a =3D b, c=3Dd =\nsoft break, 1+1=3D2\n=3D=3D=3D\n")),
        ("odd-boundary-chars", "boundary made of every allowed special character",
         _multipart("Content-Type: multipart/mixed; boundary=\"'()+_,-./:=?\"",
                    [text, text], b"'()+_,-./:=?")),
        ("boundary-spaces", "quoted boundary with spaces inside",
         _multipart('Content-Type: multipart/mixed; boundary="a b c"', [text, text], b"a b c")),
        ("boundary-70", "70-character boundary",
         _multipart(f'Content-Type: multipart/mixed; boundary="{"x" * 70}"', [text],
                    b"x" * 70)),
        ("nested-similar-boundary", "nested boundaries outer-B and inner-B",
         _multipart('Content-Type: multipart/mixed; boundary="outer-B"',
                    [text, b'Content-Type: multipart/alternative; boundary="inner-B"\n\n'
                     b"--inner-B\n" + text + b"--inner-B--\n"], b"outer-B")),
        ("yenc-text", "a yEnc block of a text file",
         mixed("Content-Type: text/plain", b"Here:\n" + yenc(TEXT, "notes.txt"))),
        ("binhex-text", "BinHex of a text file after prose",
         mixed("Content-Type: text/plain", b"Mac file:\n" + binhex("readme.txt", TEXT))),
        ("uu-text", "uuencoded text file", mixed("Content-Type: text/plain",
                                                 b"file:\n" + uu(TEXT, "notes.txt"))),
        ("rfc822-pdf", "forwarded message with a PDF", mixed(
            "Content-Type: message/rfc822", mixed("\n".join(_att_headers(name="minutes.pdf")),
                                                  b64(b"%PDF-1.4\n%%EOF\n"), boundary="fw"))),
        ("rfc2047-umlaut", "RFC 2047 encoded harmless name",
         named(f'{ct}; name="=?utf-8?q?Gr=C3=BC=C3=9Fe.pdf?="', b"%PDF-1.4\n")),
        ("rfc2231-continuation", "RFC 2231 continuation to a .docx name",
         named(f"{ct}\nContent-Disposition: attachment; filename*0*=utf-8''long%20na;"
               " filename*1=me.docx", zipped({"word/document.xml": b"<w/>"}))),
        ("rfc2231-language", "RFC 2231 value with a language tag",
         named(f"{ct}\nContent-Disposition: attachment; filename*=utf-8'en'report.pdf",
               b"%PDF-1.4\n")),
        ("sig-dashes", "text with '-- ' signature and dashed lines inside a multipart",
         _multipart('Content-Type: multipart/mixed; boundary="S"',
                    [b"Content-Type: text/plain\n\nbye\n-- \nAlice\n----------\n"], b"S")),
        ("dup-cte-same", "the same 7bit CTE header twice", top(
            "x", "Content-Type: text/plain\nContent-Transfer-Encoding: 7bit\n"
                 "Content-Transfer-Encoding: 7bit\n") + b"\nplain\n"),
        ("begin-in-prose", "'begin 644' inside a sentence",
         mixed("Content-Type: text/plain", b"We begin 644 tests at noon; end\n")),
        ("encoded-word-in-body", "a literal =?utf-8?q?..?= in a body",
         mixed("Content-Type: text/plain", b"Encoded words look like =?utf-8?q?a.exe?= here\n")),
        ("content-name-pdf", "old Content-Name header naming a PDF",
         named(f"{ct}\nContent-Name: report.pdf", b"%PDF-1.4\n")),
        ("dup-filename-harmless", "two harmless filename= params",
         named(f'{ct}\nContent-Disposition: attachment; filename="a.pdf"; filename="b.pdf"')),
        ("malformed-word-harmless", "malformed RFC 2047 word, harmless extension",
         named(f'{ct}\nContent-Disposition: attachment; filename="=?utf-8?b?Z?=.pdf"')),
        ("bad-b64-word-pdf", "base64 word without padding naming a PDF",
         named(f'{ct}; name="=?utf-8?b?cmVwb3J0LnBkZg?="')),
        ("calendar", "calendar invite", mixed(
            'Content-Type: text/calendar; method=REQUEST; name="invite.ics"',
            b"BEGIN:VCALENDAR\nVERSION:2.0\nEND:VCALENDAR\n")),
        ("ctrl-in-harmless", "control character inside a harmless name",
         named(f"{ct}\nContent-Disposition: attachment; filename*=utf-8''re%01port.pdf",
               b"%PDF-1.4\n")),
        ("crlf-message", "an ordinary message with CRLF line ends",
         mixed("\n".join(_att_headers(name="a.pdf")), b64(b"%PDF-1.4\n")).replace(
             b"\n", b"\r\n")),
        ("html-download-png", "<a download=photo.png> on a data: PNG",
         mixed(html, f'<a download="photo.png" href="data:image/png;base64,{png_uri}">p</a>\n'
               .encode())),
        ("zip-bzip2-text", "a bzip2-compressed zip member of text",
         att("a.zip", zipped_with("a.txt", TEXT, method=zipfile.ZIP_BZIP2))),
        ("tar-pax-harmless", "pax tar with a Unicode path",
         att("a.tar", pax_tar("Ubersicht.txt", "Übersicht.txt", TEXT))),
        ("rfc822-b64", "a base64-encoded forwarded message",
         mixed("Content-Type: message/rfc822\nContent-Transfer-Encoding: base64",
               b64(mixed("\n".join(_att_headers(name="a.pdf")), b64(b"%PDF-1.4\n"),
                         boundary="fw2")))),
        ("irc-log", "an IRC log: lines starting with ':'",
         mixed("Content-Type: text/plain", b":alice!a@example.org PRIVMSG #ops :deploy done\n"
               b":bob!b@example.org PRIVMSG #ops :thanks\n:" + b"abcdefhijklmpqr" * 4 + b":\n")),
        ("data-uri-text", "HTML with a percent-encoded text data: URI",
         mixed(html, b'<a href="data:text/plain,hello%20world">t</a>\n')),
        ("data-uri-svg", "HTML with a base64 SVG data: URI",
         mixed(html, b'<img src="data:image/svg+xml;base64,'
               + base64.b64encode(b'<svg xmlns="http://www.w3.org/2000/svg"/>') + b'">\n')),
        ("pdf-with-pk-bytes", "a PDF whose binary stream holds 'PK\\3\\4' and garbage",
         att("scan.pdf", b"%PDF-1.4\n1 0 obj<</Length 64>>stream\n" + b"\x9c\x11PK\x03\x04"
             + bytes(range(7, 90)) + b"\nendstream endobj\n%%EOF\n")),
        ("long-header", "a 3000-byte X- header", top("x", "X-Pad: " + "b" * 3000 + "\n")
         + b"\nhello\n"),
        ("reply-quotes-headers", "a reply quoting a forwarded message's header lines",
         mixed("Content-Type: text/plain", b"Thanks!\n\n-----Original Message-----\n"
               b"From: Bob\nSent: Monday\nTo: Alice\nSubject: RE: lunch\n"
               b"Content-Type: text/plain\n\nNoon?\n")),
    ]
    return [Case(f"ok-{key}", fam, desc, msg, c, "none") for key, desc, msg in rows]


def all_cases() -> list[Case]:
    return (header_syntax() + parameters() + boundaries() + transfer_encodings()
            + text_encodings() + message_partial() + containers() + policy_cases()
            + html_smuggling() + robustness() + look_alikes())
