"""MIME building blocks for the bomber's corpus: word salad, encodings, attachment look-alikes.

Everything takes an explicit ``random.Random`` so the corpus stays deterministic;
zips carry a fixed timestamp for the same reason.
"""

from __future__ import annotations

import base64
import binascii
import io
import random
import zipfile

KB = 1000

WORDS = [
    "the", "meeting", "invoice", "quarter", "report", "please", "find", "attached", "regards",
    "thanks", "project", "schedule", "update", "server", "mail", "queue", "delivery",
    "customer", "order", "shipment", "review", "draft", "budget", "team", "monday", "friday",
    "agenda", "notes", "minutes", "contract", "price", "offer", "support", "ticket", "release",
    "network", "backup", "storage", "policy", "account", "payment", "reminder", "question",
]
ZIP_TIME = (2024, 1, 1, 0, 0, 0)

def text(rng: random.Random, n_bytes: int) -> str:
    """Roughly ``n_bytes`` of word salad in lines of about 72 characters."""
    lines: list[str] = []
    size = 0
    while size < n_bytes:
        line = " ".join(rng.choices(WORDS, k=rng.randint(8, 12)))
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines) + "\n"


def b64(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii")


def uuencode(data: bytes, name: str) -> str:
    lines = [f"begin 644 {name}"]
    for i in range(0, len(data), 45):
        lines.append(binascii.b2a_uu(data[i : i + 45], backtick=True).decode("ascii").rstrip("\n"))
    lines += ["`", "end", ""]
    return "\n".join(lines)


def make_zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def pdf_like(rng: random.Random, n: int) -> bytes:
    body = rng.randbytes(max(n - 200, 16))
    head = b"%%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    head += b"3 0 obj\n<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(body)
    return (head + body + b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n")


def docx_like(rng: random.Random, n: int) -> bytes:
    doc = "<w:document><w:body><w:p><w:t>" + text(rng, min(n, 20 * KB)) + "</w:t></w:p>"
    return make_zip([
        ("[Content_Types].xml", b'<?xml version="1.0"?><Types/>'),
        ("_rels/.rels", b'<?xml version="1.0"?><Relationships/>'),
        ("word/document.xml", (doc + "</w:body></w:document>").encode()),
        ("word/media/image1.png", b"\x89PNG\r\n\x1a\n" + rng.randbytes(max(n - 20 * KB, 64))),
    ])


def image(rng: random.Random, n: int) -> tuple[bytes, str, str]:
    if rng.random() < 0.5:
        png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.randbytes(max(n - 16, 16))
        return png, "image/png", "png"
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + rng.randbytes(max(n - 13, 16)) + b"\xff\xd9"
    return jpeg, "image/jpeg", "jpg"


def clean_attachment(rng: random.Random, n: int) -> tuple[str, str, bytes]:
    """(file name, MIME type, bytes) of a harmless attachment of about ``n`` bytes."""
    kind = rng.choice(("pdf", "docx", "zip", "image"))
    stem = rng.choice(("report", "invoice", "scan", "minutes", "photo", "offer", "budget"))
    number = rng.randint(1, 9999)
    if kind == "pdf":
        return f"{stem}-{number}.pdf", "application/pdf", pdf_like(rng, n)
    if kind == "docx":
        return (f"{stem}-{number}.docx",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                docx_like(rng, n))
    if kind == "zip":
        members = [(f"{stem}/notes-{k}.txt", text(rng, min(n // 4, 8 * KB)).encode())
                   for k in range(3)] + [(f"{stem}/data.bin", rng.randbytes(max(n - 6 * KB, 64)))]
        return f"{stem}-{number}.zip", "application/zip", make_zip(members)
    data, mime, ext = image(rng, n)
    return f"IMG_{number:04d}.{ext}", mime, data


def headers(rng: random.Random, index: int, seed: int, content_type: str) -> str:
    day, minute = divmod(index, 1440)
    user = rng.choice(("alice", "bob", "carol", "dave", "erin", "frank"))
    return (
        f"Return-Path: <{user}@sender.example>\n"
        f"Received: from mx.sender.example by mail.bench.example with ESMTP id {index:08x}\n"
        f"From: {user.title()} <{user}@sender.example>\n"
        f"To: postmaster@bench.example\n"
        f"Subject: {' '.join(rng.choices(WORDS, k=4))}\n"
        f"Date: Mon, {1 + day % 28:02d} Jan 2024 {minute // 60:02d}:{minute % 60:02d}:00 +0000\n"
        f"Message-ID: <{index}.{seed}@bench.example>\n"
        f"MIME-Version: 1.0\n"
        f"Content-Type: {content_type}\n"
    )


def part(mime: str, body: str, encoding: str = "7bit", filename: str | None = None) -> str:
    disp = f'Content-Disposition: attachment; filename="{filename}"\n' if filename else ""
    name = f'; name="{filename}"' if filename else ""
    return f"Content-Type: {mime}{name}\nContent-Transfer-Encoding: {encoding}\n{disp}\n{body}"


def multipart(boundary: str, parts: list[str]) -> str:
    inner = "".join(f"--{boundary}\n{p}\n" for p in parts)
    return f"This is a multi-part message in MIME format.\n\n{inner}--{boundary}--\n"


def html(body: str) -> str:
    paras = "".join(f"<p>{line}</p>\n" for line in body.splitlines())
    return f"<html><body>\n{paras}</body></html>\n"
