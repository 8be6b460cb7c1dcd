"""Hostile inputs for the walker's cost: one generator per family, three sizes each.

A generator takes a scale ``k`` (1, 4, 16) and returns the bytes of one input
whose size grows about linearly with ``k``; at ``k=16`` the largest are a few
MB. The families attack cost, not content: each repeats a structure the
walker reads (a boundary, a header line, a begin marker, an archive entry) so
that any step that is not linear in its input shows as growth from N to 16N.
Inputs are clean (no signature), so every engine reads all of them to the end.
Used by :mod:`bench.hostile`; deterministic (no randomness).
"""

from __future__ import annotations

import base64
import binascii
import bz2
import gzip
import io
import lzma
import struct
import tarfile
import zipfile
from collections.abc import Callable

Generator = Callable[[int], bytes]
FAMILIES: dict[str, tuple[str, Generator]] = {}  # name -> (group, generator)

_PLAIN = b"From: a@example.com\nTo: b@example.com\nSubject: hostile\nMIME-Version: 1.0\n"


def family(group: str) -> Callable[[Generator], Generator]:
    def register(fn: Generator) -> Generator:
        FAMILIES[fn.__name__.removeprefix("gen_")] = (group, fn)
        return fn
    return register


def _mail(ctype: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return _PLAIN + extra + b"Content-Type: " + ctype + b"\n\n" + body


def _filler(n: int) -> bytes:
    """n bytes of clean, wrapped text."""
    line = b"The quick brown fox jumps over the lazy dog 0123456789 lorem ipsum.\n"
    return (line * (n // len(line) + 1))[:n]


# -- MIME structure ---------------------------------------------------------------------

@family("mime")
def gen_mime_two_boundaries(k: int) -> bytes:
    parts = b"".join(b"--AAA\nContent-Type: text/plain\n\npart %d a\n--BBB\n"
                     b"Content-Type: text/plain\n\npart %d b\n" % (i, i) for i in range(1500 * k))
    return _mail(b'multipart/mixed; boundary="AAA"', parts + b"--AAA--\n--BBB--\n",
                 b'Content-Type: multipart/mixed; boundary="BBB"\n')


@family("mime")
def gen_mime_prefix_boundaries(k: int) -> bytes:
    declared = b"".join(b'Content-Type: multipart/mixed; boundary="%s"\n' % (b"b" * n)
                        for n in range(1, 9))
    part = b"--bbbbbbbb\nContent-Type: text/plain\n\nx\n"
    return _PLAIN + declared + b"\n" + part * (1000 * k) + b"--bbbbbbbb--\n"


@family("mime")
def gen_mime_tiny_parts(k: int) -> bytes:
    return _mail(b'multipart/mixed; boundary="b"', b"--b\n\nx\n" * (5000 * k) + b"--b--\n")


@family("mime")
def gen_mime_loose_delims(k: int) -> bytes:
    body = b"".join(b"--bnd%d\nContent-Type: text/plain\n\n%d\n" % (i, i) for i in range(2000 * k))
    return _mail(b'multipart/mixed; boundary="bnd"', body)


@family("mime")
def gen_mime_deep_nesting(k: int) -> bytes:
    depth = 12
    inner = _filler(200)
    for d in range(depth):
        b = b"n%d" % d
        inner = (b"Content-Type: multipart/mixed; boundary=\"%s\"\n\n" % b
                 + (b"--%s\n" % b + inner + b"\n") * 1 + b"--%s\n\n%s\n--%s--\n" % (
                     b, _filler(400 * k), b))
    return _PLAIN + inner


@family("mime")
def gen_mime_nested_messages(k: int) -> bytes:
    msg = _mail(b"text/plain", _filler(300))
    for _ in range(10):
        msg = _mail(b'multipart/mixed; boundary="m"',
                    b"--m\nContent-Type: message/rfc822\n\n" + msg + b"\n--m\n\n"
                    + _filler(1000 * k) + b"\n--m--\n")
    return msg


@family("mime")
def gen_mime_alternatives(k: int) -> bytes:
    alt = b"--alt\nContent-Type: text/html\n\n<p>hello</p>\n"
    return _mail(b'multipart/alternative; boundary="alt"', alt * (3000 * k) + b"--alt--\n")


@family("mime")
def gen_mime_after_close(k: int) -> bytes:
    part = b"--c\nContent-Type: text/plain\n\nafter\n--c--\n"
    return _mail(b'multipart/mixed; boundary="c"', part * (3000 * k))


@family("mime")
def gen_mime_guessed(k: int) -> bytes:
    body = b"".join(b"--tok%d\n\nx\n" % (i % 50) for i in range(4000 * k))
    return _mail(b"multipart/mixed", body)


@family("mime")
def gen_mime_long_line(k: int) -> bytes:
    return _mail(b'multipart/mixed; boundary="L"',
                 b"--L\nContent-Type: text/plain\n\n" + b"x" * (200_000 * k) + b"\n--L--\n")


@family("mime")
def gen_mime_bare_cr(k: int) -> bytes:
    part = b"--r\rContent-Type: text/plain\r\rhello\r"
    return (_PLAIN.replace(b"\n", b"\r") + b'Content-Type: multipart/mixed; boundary="r"\r\r'
            + part * (3000 * k) + b"--r--\r")


@family("mime")
def gen_mbox_many_messages(k: int) -> bytes:
    """An mbox of many small messages, each with an attachment (every one is walked)."""
    one = (b"From a@example.com Mon Dec  7 10:00:00 2026\n" + _PLAIN
           + b'Content-Type: multipart/mixed; boundary="m%d"\n\n--m%d\nContent-Type: text/plain'
           + b'\n\nhi\n--m%d\nContent-Type: application/octet-stream; name="a%d.bin"\n'
           + b"Content-Transfer-Encoding: base64\n\nY2xlYW4gZGF0YQ==\n--m%d--\n\n")
    return b"".join(one % ((i,) * 5) for i in range(400 * k))


@family("mime")
def gen_mbox_from_lines(k: int) -> bytes:
    """An mbox whose text is all lines starting "From " (no split reads as a message)."""
    return (b"From a@example.com Mon Dec  7 10:00:00 2026\n" + _mail(b"text/plain", b"")
            + b"From the desk of nobody, a line that is no mbox separator\n" * (20_000 * k))


@family("mime")
def gen_mime_dash_lines(k: int) -> bytes:
    body = b"--\n" * (50_000 * k)
    return _mail(b'multipart/mixed; boundary="zz"', b"--zz\n\n" + body + b"--zz--\n")


# -- headers ------------------------------------------------------------------------------

@family("headers")
def gen_hdr_long_line(k: int) -> bytes:
    return _PLAIN + b"X-Long: " + b"a" * (150_000 * k) + b"\nContent-Type: text/plain\n\nhi\n"


@family("headers")
def gen_hdr_unusual_lines(k: int) -> bytes:
    odd = b"".join(b"not a header line %d\nName %d : spaced\n" % (i, i) for i in range(3000 * k))
    return _PLAIN + odd + b"\nbody\n"


@family("headers")
def gen_hdr_whitespace_lines(k: int) -> bytes:
    lines = b"".join(b"X-H%d: v\n \t\n" % i for i in range(3000 * k))
    return _PLAIN + lines + b"\nbody\n"


@family("headers")
def gen_hdr_many_names(k: int) -> bytes:
    names = b"".join(b'; name="file%d.txt"' % i for i in range(3000 * k))
    return _mail(b"application/octet-stream" + names, b"aGVsbG8=\n",
                 b"Content-Transfer-Encoding: base64\n")


@family("headers")
def gen_hdr_filename_continuations(k: int) -> bytes:
    conts = b"".join(b";\n filename*%d*=%%41%%42%d" % (i, i) for i in range(3000 * k))
    return _mail(b"text/plain", b"hello\n",
                 b"Content-Disposition: attachment; filename*0*=utf-8''a" + conts + b"\n")


@family("headers")
def gen_hdr_duplicate_types(k: int) -> bytes:
    dups = b"".join(b"Content-Type: text/x-%d; name=\"n%d.txt\"\n" % (i, i)
                    for i in range(2000 * k))
    return _PLAIN + dups + b"\nbody\n"


@family("headers")
def gen_hdr_rfc2047_mass(k: int) -> bytes:
    words = b" ".join(b"=?UTF-8?B?" + base64.b64encode(b"name%d" % i) + b"?="
                      for i in range(4000 * k))
    return _mail(b'application/octet-stream; name="' + words + b'"', b"aGVsbG8=\n",
                 b"Subject: " + words[:200_000] + b"\n")


@family("headers")
def gen_hdr_folded(k: int) -> bytes:
    folds = b"".join(b"\n\tpart%d" % i for i in range(20_000 * k))
    return _PLAIN + b"Content-Type: text/plain; name=x" + folds + b"\n\nbody\n"


@family("headers")
def gen_hdr_many_headers(k: int) -> bytes:
    return _PLAIN + b"".join(b"X-H%d: value %d\n" % (i, i) for i in range(10_000 * k)) + b"\nb\n"


@family("headers")
def gen_hdr_unclosed_quote(k: int) -> bytes:
    value = b'application/octet-stream; name="' + b'\\"a; b=' * (20_000 * k)
    return _mail(value, b"body\n")


@family("headers")
def gen_hdr_many_params(k: int) -> bytes:
    value = b"text/plain" + b"".join(b"; p%d=v%d" % (i, i) for i in range(10_000 * k))
    return _mail(value, b"body\n")


@family("headers")
def gen_hdr_comments(k: int) -> bytes:
    value = b"text/plain; " + b"(" * (20_000 * k) + b"x" + b")" * (20_000 * k)
    return _mail(value, b"body\n", b"Content-Transfer-Encoding: " + b"(c)" * (10_000 * k) + b"\n")


@family("headers")
def gen_hdr_part_headers(k: int) -> bytes:
    part = b"--p\nContent-Type : text/plain\nbogus line\n \nX: y\n\nbody\n"
    return _mail(b'multipart/mixed; boundary="p"', part * (2000 * k) + b"--p--\n")


# -- text encodings -------------------------------------------------------------------------

@family("text")
def gen_uu_begins(k: int) -> bytes:
    return _mail(b"text/plain", b"begin 644 file.bin\nM86)C\n" * (10_000 * k))


@family("text")
def gen_uu_no_end(k: int) -> bytes:
    return _mail(b"text/plain", b"begin 644 a.bin\n" + b"begin 644 b.bin\n" * (15_000 * k))


@family("text")
def gen_yenc_begins(k: int) -> bytes:
    return _mail(b"text/plain", b"=ybegin line=128 size=10 name=a.bin\nabc\n" * (6_000 * k))


@family("text")
def gen_binhex_banners(k: int) -> bytes:
    banner = b"(This file must be converted with BinHex 4.0)\n:abc\n"
    return _mail(b"text/plain", banner * (5_000 * k))


def _hqx_encode(raw: bytes) -> bytes:
    """BinHex 4.0 6-bit encoding of already RLE'd bytes."""
    alphabet = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr"
    out = bytearray()
    bits = nbits = 0
    for c in raw:
        bits = (bits << 8) | c
        nbits += 8
        while nbits >= 6:
            nbits -= 6
            out.append(alphabet[(bits >> nbits) & 63])
    if nbits:
        out.append(alphabet[(bits << (6 - nbits)) & 63])
    lines = [bytes(out[i:i + 64]) for i in range(0, len(out), 64)]
    return b"\n".join(lines)


@family("text")
def gen_binhex_rle(k: int) -> bytes:
    size = 60_000 * k
    name = b"a.bin"
    head = bytes([len(name)]) + name + b"\x00" + b"TEXTttxt" + b"\x00\x00"
    head += struct.pack(">II", size, 0) + b"\x00\x00"
    runs = b"A\x90\xff" * (size // 255) + b"\x00\x00\x00\x00"
    text = _hqx_encode(head + runs)
    return _mail(b"text/plain", b"(This file must be converted with BinHex 4.0)\n:"
                 + text + b":\n")


def _b64_after_quads(size: int, junk: bytes, width: int) -> bytes:
    """A base64 attachment with ``junk`` after every 4-character group."""
    raw = base64.b64encode(_filler(size))
    text = b"".join(raw[i:i + 4] + junk for i in range(0, len(raw), 4))
    lines = b"\n".join(text[i:i + width] for i in range(0, len(text), width))
    return _mail(b"application/octet-stream", lines + b"\n", b"Content-Transfer-Encoding: base64\n")


@family("text")
def gen_b64_junk(k: int) -> bytes:
    return _b64_after_quads(40_000 * k, b"!*", 76)


@family("text")
def gen_b64_pads(k: int) -> bytes:
    return _b64_after_quads(60_000 * k, b"=", 75)


@family("text")
def gen_qp_soft_breaks(k: int) -> bytes:
    return _mail(b"text/plain", b"ab=  \n" * (40_000 * k),
                 b"Content-Transfer-Encoding: quoted-printable\n")


@family("text")
def gen_qp_escapes(k: int) -> bytes:
    return _mail(b"text/plain", (b"=3D=41=ZZ=" * 7 + b"\n") * (3_000 * k),
                 b"Content-Transfer-Encoding: quoted-printable\n")


@family("text")
def gen_uu_big_block(k: int) -> bytes:
    raw = _filler(150_000 * k)
    lines = b"".join(binascii.b2a_uu(raw[i:i + 45]) for i in range(0, len(raw), 45))
    return _mail(b"text/plain", b"begin 644 big.txt\n" + lines + b"`\nend\n")


@family("text")
def gen_data_uris(k: int) -> bytes:
    uri = b'<a download="f.bin" href="data:application/octet-stream;base64,' + (
        base64.b64encode(_filler(60)) + b'">x</a>\n')
    return _mail(b"text/html", b"<html><body>\n" + uri * (1_500 * k) + b"</body></html>\n")


@family("text")
def gen_data_entities(k: int) -> bytes:
    return _mail(b"text/html", b"<html>" + b"data&#58;&amp;data&colon;" * (10_000 * k))


@family("text")
def gen_b64_undeclared(k: int) -> bytes:
    raw = base64.b64encode(_filler(150_000 * k))
    return _mail(b"text/plain", b"\n".join(raw[i:i + 76] for i in range(0, len(raw), 76)))


@family("text")
def gen_begin_base64(k: int) -> bytes:
    return _mail(b"text/plain", b"begin-base64 644 a.bin\naGVsbG8=\n====\n" * (6_000 * k))


# -- messages inside a text (scand.content.embedded) ---------------------------------------

_SEE_BELOW = b"Hello, see the message below.\n\n"


@family("text")
def gen_inline_header_blocks(k: int) -> bytes:
    """A text of header blocks that are no message (no content header): every one a
    candidate start, none read."""
    block = b"From: x%d@example.com\nTo: y@example.com\nSubject: re %d\nDate: today\n\nok\n"
    return _SEE_BELOW + b"".join(block % (i, i) for i in range(3_000 * k))


@family("text")
def gen_inline_candidate_lines(k: int) -> bytes:
    """Mail header lines each followed by a line that is not a header: a candidate
    per two lines, each block one line long."""
    return _SEE_BELOW + b"Subject: x\nnot a header line\n" * (10_000 * k)


@family("text")
def gen_inline_many_starts(k: int) -> bytes:
    """Many messages inside a text, each a base64 body: every one is a start."""
    one = (b"Forwarded:\n\nFrom: a@example.com\nMIME-Version: 1.0\n"
           b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(_filler(3000)))
    return _SEE_BELOW + one * (60 * k)


@family("text")
def gen_inline_chain(k: int) -> bytes:
    """Each message in the text part of the one before, long texts between (the
    depth limit ends the chain)."""
    link = (b"%s\nFrom: a@example.com\nMIME-Version: 1.0\n"
            b"Content-Type: multipart/mixed; boundary=\"L%d\"\n\n--L%d\n"
            b"Content-Type: text/plain\n\n")
    return b"".join(link % (_filler(8_000 * k), i, i) for i in range(30))


# -- archives ----------------------------------------------------------------------------------

def _zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


@family("archive")
def gen_zip_local_only(k: int) -> bytes:
    members = [(f"m{i}.txt", b"x" * 40) for i in range(1000 * k)]
    full = _zip(members)
    listed = _zip(members[:1])
    cd = listed[listed.find(b"PK\x01\x02"):]
    locals_ = full[: full.find(b"PK\x01\x02")]
    # The central directory (of a one-member zip at offset 0) lists only the first.
    return locals_ + cd


@family("archive")
def gen_zip_many_members(k: int) -> bytes:
    return _zip([(f"d/m{i}.txt", b"hello") for i in range(300 * k)], zipfile.ZIP_DEFLATED)


@family("archive")
def gen_zip_pk_in_data(k: int) -> bytes:
    return _zip([("a.bin", b"PK\x03\x04" * (40_000 * k))])


@family("archive")
def gen_zip_stub(k: int) -> bytes:
    return b"MZ" + b"PK\x03\x04\x14\x00" * (30_000 * k) + _zip([("a.txt", b"hi")])


@family("archive")
def gen_zip_overlap(k: int) -> bytes:
    one = _zip([("big.txt", _filler(100_000 * k))])
    cd_at = one.find(b"PK\x01\x02")
    eocd_at = one.find(b"PK\x05\x06")
    entry = one[cd_at:eocd_at]
    count = 200
    cds = b"".join(entry.replace(b"big.txt", b"b%05d.t" % i) for i in range(count))
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, len(cds), cd_at, 0)
    return one[:cd_at] + cds + eocd


@family("archive")
def gen_zip_nested(k: int) -> bytes:
    data = _zip([("core.txt", _filler(20_000 * k))])
    for i in range(10):
        data = _zip([(f"l{i}.zip", data), (f"pad{i}.txt", b"p")])
    return data


@family("archive")
def gen_gzip_concat(k: int) -> bytes:
    return gzip.compress(b"abc", mtime=0) * (8_000 * k)


@family("archive")
def gen_bzip2_concat(k: int) -> bytes:
    return bz2.compress(b"abc") * (3_000 * k)


@family("archive")
def gen_xz_concat(k: int) -> bytes:
    return lzma.compress(b"abc") * (2_000 * k)


@family("archive")
def gen_tar_pax(k: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(100 * k):
            info = tarfile.TarInfo(f"f{i}.txt")
            info.pax_headers = {f"x.k{j}": "v" * 20 for j in range(20)}
            info.size = 3
            tf.addfile(info, io.BytesIO(b"abc"))
    return buf.getvalue()


@family("archive")
def gen_tar_many(k: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for i in range(250 * k):
            info = tarfile.TarInfo(f"f{i}.txt")
            info.size = 3
            tf.addfile(info, io.BytesIO(b"abc"))
    return buf.getvalue()


def _iso_record(extent: int, size: int, name: bytes, is_dir: bool) -> bytes:
    rec = bytearray(33 + len(name) + (0 if len(name) % 2 else 1))
    rec[0] = len(rec)
    rec[2:10] = struct.pack("<I", extent) + struct.pack(">I", extent)
    rec[10:18] = struct.pack("<I", size) + struct.pack(">I", size)
    rec[25] = 2 if is_dir else 0
    rec[28:32] = b"\x01\x00\x00\x01"
    rec[32] = len(name)
    rec[33 : 33 + len(name)] = name
    return bytes(rec)


@family("archive")
def gen_iso_dirs(k: int) -> bytes:
    """An image whose directory lists many files that all cover the whole image."""
    total = 64 * k * 2048
    dir_sectors = bytearray(_iso_record(20, 0, b"\x00", True) + _iso_record(20, 0, b"\x01", True))
    for i in range(40 * k):
        rec = _iso_record(0, total, b"F%05d.TXT;1" % i, False)
        if len(dir_sectors) % 2048 + len(rec) > 2048:
            dir_sectors += b"\x00" * (2048 - len(dir_sectors) % 2048)
        dir_sectors += rec
    dsize = len(dir_sectors)
    image = bytearray(max(total, 20 * 2048 + dsize))
    pvd = bytearray(2048)
    pvd[0:6] = b"\x01CD001"
    pvd[156:190] = _iso_record(20, dsize, b"\x00", True)
    image[16 * 2048 : 17 * 2048] = pvd
    image[17 * 2048 : 17 * 2048 + 6] = b"\xffCD001"
    image[20 * 2048 : 20 * 2048 + dsize] = dir_sectors
    return bytes(image)


@family("archive")
def gen_tnef_attrs(k: int) -> bytes:
    out = bytearray(b"\x78\x9f\x3e\x22\x00\x00")
    for i in range(4_000 * k):
        title = b"f%d.txt\x00" % i
        out += struct.pack("<BII", 2, 0x00018010, len(title)) + title + b"\x00\x00"
        out += struct.pack("<BII", 2, 0x0006800F, 4) + b"data" + b"\x00\x00"
        out += struct.pack("<BII", 2, 0x00069002, 0) + b"\x00\x00"
    return bytes(out)


@family("archive")
def gen_gzip_in_mail(k: int) -> bytes:
    raw = base64.encodebytes(gzip.compress(b"abc", mtime=0) * (3_000 * k))
    return _mail(b'application/gzip; name="a.gz"', raw, b"Content-Transfer-Encoding: base64\n")


@family("archive")
def gen_deflate_bomb(k: int) -> bytes:
    return _zip([("zeros.bin", b"\x00" * (1_000_000 * k))], zipfile.ZIP_DEFLATED)
