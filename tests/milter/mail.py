"""Test messages for the milter and Postfix tests: headers and bodies, MIME with attachments."""

from __future__ import annotations

import base64

from tests.conftest import EICAR

EICAR_NAME = "Eicar-Test-Signature"
Headers = list[tuple[str, str]]


def _b64(data: bytes) -> bytes:
    text = base64.b64encode(data)
    return b"\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))


def message(msgid: str, filename: str | None = None, payload: bytes = b"",
            filler: int = 0) -> tuple[Headers, bytes]:
    """(headers, body): a text part (``filler`` extra bytes of text), and an optional
    base64 attachment ``filename`` carrying ``payload``."""
    headers = [
        ("From", "alice@example.org"),
        ("To", "bob@example.net"),
        ("Date", "Tue, 01 Dec 2026 00:00:00 +0000"),
        ("Subject", "milter test " + msgid),
        ("Message-ID", f"<{msgid}@example.org>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'multipart/mixed; boundary="b0undary"'),
    ]
    text = b"Hello Bob,\r\nplease find the file attached.\r\n"
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    text += line * (filler // len(line) + 1 if filler else 0)
    body = b"--b0undary\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + text
    if filename is not None:
        body += (
            b"--b0undary\r\nContent-Type: application/octet-stream; name=\"" + filename.encode()
            + b"\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; "
            b"filename=\"" + filename.encode() + b"\"\r\n\r\n" + _b64(payload) + b"\r\n"
        )
    body += b"--b0undary--\r\n"
    return headers, body


def as_rfc822(headers: Headers, body: bytes) -> bytes:
    return b"".join(f"{n}: {v}\r\n".encode() for n, v in headers) + b"\r\n" + body


CLEAN_PDF = b"%PDF-1.4\n% a harmless little document\n" + bytes(range(256)) * 4

__all__ = ["CLEAN_PDF", "EICAR", "EICAR_NAME", "as_rfc822", "message"]
