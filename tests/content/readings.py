"""EICAR in every reading the walker knows: each decoder, each lenient variant, each
archive path. One message per reading; :mod:`tests.content.test_readings` asks
the built-in, clamav and clamd engines about every one (issue 23: every reading
reaches every engine, also those whose own parser reads the standard way only)."""

from __future__ import annotations

import base64
import binascii
import bz2
import gzip
import io
import lzma
import tarfile
import zipfile

from tests.content.evasion_cases import (
    EICAR,
    b64,
    binhex,
    iso9660,
    mixed,
    pax_tar,
    qp,
    raw_zip,
    single,
    tnef,
    uu,
    yenc,
)

ATT = "Content-Type: application/octet-stream; name=data.bin\nContent-Transfer-Encoding: "
TXT = "Content-Type: text/plain"
HTML = "Content-Type: text/html"


def _b64_att(data: bytes, name: str = "data.bin") -> bytes:
    return mixed(f"Content-Type: application/octet-stream; name={name}\n"
                 "Content-Transfer-Encoding: base64", b64(data))


def _stray_pads(data: bytes) -> bytes:
    raw = base64.b64encode(data)
    text = b"".join(raw[i:i + 4] + b"=" for i in range(0, len(raw), 4))
    return b"\n".join(text[i:i + 75] for i in range(0, len(text), 75)) + b"\n"


def _junk(data: bytes) -> bytes:
    raw = base64.b64encode(data)
    return b"!".join(raw[i:i + 4] for i in range(0, len(raw), 4)) + b"\n"


def uu_stray(data: bytes) -> bytes:
    lines = [binascii.b2a_uu(data[i:i + 45]) for i in range(0, len(data), 45)]
    lines[0] = lines[0][:10] + b"~~" + lines[0][10:]  # outside the uuencode alphabet
    return b"begin 644 data.bin\n" + b"".join(lines) + b"`\nend\n"


def qp_stray(data: bytes) -> bytes:
    """``data`` (printable, no ``=``: quoted-printable as it is) with a stray ``=``
    before each ``-``: the strict reading keeps ``=-``, the lenient one drops it."""
    return data.replace(b"-", b"=-") + b"\n"


def _zip(data: bytes, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        zf.writestr("e.com", data)
    return buf.getvalue()


def _local_only(data: bytes) -> bytes:
    listed = raw_zip([(b"clean.txt", b"clean.txt", b"hello", b"")])
    hidden = raw_zip([(b"e.com", b"e.com", data, b"")])
    return b"MZ" + b"\0" * 64 + hidden[: hidden.find(b"PK\x01\x02")] + listed


def _tar(data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("e.com")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def readings() -> dict[str, bytes]:
    """Reading id -> a message (or file) whose only EICAR is behind that reading."""
    e = EICAR
    filler = b"clean %d\n"
    out = {
        # transfer encodings, strict and lenient
        "base64": _b64_att(e),
        "base64-stray-pads": mixed(ATT + "base64", _stray_pads(e * 80)),
        "base64-junk": mixed(ATT + "base64", _junk(e)),
        "base64-undeclared": mixed("Content-Type: application/octet-stream; name=data.bin",
                                   b64(e * 3)),
        **{f"cte-{cte}": mixed(ATT + cte, e + b"\n") for cte in ("7bit", "8bit", "binary")},
        "qp": mixed(ATT + "quoted-printable", qp(e)),
        "qp-soft-break-spaces": mixed(ATT + "quoted-printable",
                                      qp(e).replace(b"=\n", b"=  \n")),
        "qp-stray-equals": mixed(ATT + "quoted-printable", qp_stray(e)),
        "uuencode-cte": mixed(ATT + "x-uuencode", uu(e, "data.bin")),
        "yenc-cte": mixed(ATT + "x-yencode", yenc(e, "data.bin")),
        "binhex-cte": mixed(ATT + "x-binhex", binhex("data.bin", e)),
        # blocks in text
        "uuencode-text": mixed(TXT, b"see below\n" + uu(e, "data.bin")),
        "uuencode-stray-chars": mixed(TXT, uu_stray(e)),
        "begin-base64-text": mixed(TXT, b"begin-base64 644 data.bin\n" + b64(e) + b"====\n"),
        "yenc-text": mixed(TXT, b"see below\n" + yenc(e, "data.bin")),
        "binhex-text": mixed(TXT, b"prose first\n" + binhex("data.bin", e)),
        "binhex-second-block": mixed(TXT, binhex("a.txt", b"hello") + binhex("data.bin", e)),
        "data-uri": mixed(HTML, b'<a href="data:application/octet-stream;base64,'
                          + base64.b64encode(e) + b'">x</a>\n'),
        "data-uri-entity": mixed(HTML, b'<a href="data&#58;application/octet-stream;base64,'
                                 + base64.b64encode(e) + b'">x</a>\n'),
        # archives
        "zip-deflated": _b64_att(_zip(e), "a.zip"),
        "zip-stored": _b64_att(_zip(e, zipfile.ZIP_STORED), "a.zip"),
        "zip-bzip2": _b64_att(_zip(e, zipfile.ZIP_BZIP2), "a.zip"),
        "zip-lzma": _b64_att(_zip(e, zipfile.ZIP_LZMA), "a.zip"),
        "zip-local-only": _b64_att(_local_only(e), "a.zip"),
        "zip-behind-stub": _b64_att(b"MZ" + b"\0" * 200 + _zip(e), "a.exe"),
        "gzip": _b64_att(gzip.compress(e, mtime=0), "a.gz"),
        "gzip-200-streams": _b64_att(b"".join(gzip.compress(filler % i, mtime=0)
                                              for i in range(199)) + gzip.compress(e, mtime=0),
                                     "a.gz"),
        "bzip2-200-streams": _b64_att(b"".join(bz2.compress(filler % i) for i in range(199))
                                      + bz2.compress(e), "a.bz2"),
        "xz-20-streams": _b64_att(b"".join(lzma.compress(filler % i) for i in range(19))
                                  + lzma.compress(e), "a.xz"),
        "tar": _b64_att(_tar(e), "a.tar"),
        "tar-pax": _b64_att(pax_tar("short.com", "long/name/e.com", e), "a.tar"),
        "iso9660": _b64_att(iso9660({"E.COM": e}), "a.iso"),
        "tnef": _b64_att(tnef("e.com", e), "winmail.dat"),
        "zip-in-gzip": _b64_att(gzip.compress(_zip(e), mtime=0), "a.gz"),
        "message-rfc822": mixed("Content-Type: message/rfc822",
                                single(ATT + "base64", b64(e), "inner")),
    }
    return out
