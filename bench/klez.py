"""Corpora for the verdict cache: a Klez-shaped worm flood, and one with no repeats.

Klez shape: 95% of messages carry one of five worm attachments (120-150 KB
each), each copy under its own headers, subject, body text and attachment
name; the other 5% are clean messages with an attachment of their own. The
five worms are named by MD5 (.hdb), as ClamAV names such samples; optionally
``ndb`` random body signatures are added so the engine costs what a real
signature set costs.

No-repeat: the same shape and sizes, but every attachment is distinct and
clean, so a cache can only cost, never help.

Used by tests/farm (verdicts) and bench/bench_cache.py (throughput).
"""

from __future__ import annotations

import base64
import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

WORMS = 5
WORM_SHARE = 0.95
NAMES = ["readme", "setup", "patch", "update", "photo", "game", "invoice", "tool",
         "install", "demo", "Klez.removal", "screensaver"]
EXTS = [".exe", ".pif", ".scr", ".bat", ".doc.pif", ".txt.exe", ".zip.exe"]


@dataclass(frozen=True)
class Mail:
    data: bytes
    expect: str  # "0" or the exact "1:<name>" a right verdict must be


def worm_payload(i: int) -> bytes:
    rng = random.Random(f"worm-{i}")
    size = 120_000 + i * 7_000
    return b"MZ\x90\x00" + rng.randbytes(size)


def worm_name(i: int) -> str:
    return f"Worm.Klez.Bench-{i}"


def write_signatures(directory: Path, ndb: int = 0) -> Path:
    """The five worms' MD5s (.hdb), plus ``ndb`` random body signatures."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(WORMS):
        data = worm_payload(i)
        lines.append(f"{hashlib.md5(data).hexdigest()}:{len(data)}:{worm_name(i)}\n")
    (directory / "klez.hdb").write_text("".join(lines))
    if ndb:
        rng = random.Random(42)
        body = []
        for n in range(ndb):  # long literal runs: no false positives on random bytes
            pieces = [rng.randbytes(rng.randint(8, 12)).hex()]
            for _ in range(rng.randint(0, 2)):
                pieces.append(rng.choice(["??", "{2-8}"]))
                pieces.append(rng.randbytes(rng.randint(6, 10)).hex())
            body.append(f"Bench.Sig-{n}:0:*:{''.join(pieces)}\n")
        (directory / "bench.ndb").write_text("".join(body))
    return directory


def _message(rng: random.Random, n: int, attachment: bytes, filename: str) -> bytes:
    boundary = f"----=_NextPart_{rng.getrandbits(64):016x}"
    words = ["hello", "see", "attached", "the", "file", "you", "asked", "for", "regards",
             "this", "is", "a", "special", "tool", "from", "microsoft"]
    text = " ".join(rng.choice(words) for _ in range(rng.randint(20, 80)))
    b64 = base64.encodebytes(attachment).decode()
    return (
        f"From: user{rng.randint(1, 10**6)}@example{rng.randint(1, 999)}.com\r\n"
        f"To: victim{n}@example.org\r\n"
        f"Subject: {rng.choice(['Hi', 'Re: hello', 'A very funny game', 'Worm Klez.E immunity'])}"
        f" {rng.randint(1, 10**9)}\r\n"
        f"Message-ID: <{rng.getrandbits(80):x}@mail.example>\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{text}\r\n"
        f"--{boundary}\r\nContent-Type: application/octet-stream; name=\"{filename}\"\r\n"
        f"Content-Transfer-Encoding: base64\r\n"
        f'Content-Disposition: attachment; filename="{filename}"\r\n\r\n{b64}\r\n'
        f"--{boundary}--\r\n"
    ).encode()


def klez(count: int, seed: int = 1) -> list[Mail]:
    """``count`` messages of the Klez shape, with the verdict each must get."""
    rng = random.Random(seed)
    mails = []
    for n in range(count):
        if rng.random() < WORM_SHARE:
            i = rng.randrange(WORMS)
            name = rng.choice(NAMES) + rng.choice(EXTS)
            mails.append(Mail(_message(rng, n, worm_payload(i), name), f"1:{worm_name(i)}"))
        else:
            mails.append(Mail(_clean_one(rng, n), "0"))
    return mails


def _clean_one(rng: random.Random, n: int) -> bytes:
    body = b"%PDF-1.4\n" + rng.randbytes(rng.randint(120_000, 150_000))
    return _message(rng, n, body, f"report-{n}.pdf")


def no_repeats(count: int, seed: int = 2) -> list[Mail]:
    """``count`` clean messages, every attachment distinct, sizes as in :func:`klez`."""
    rng = random.Random(seed)
    return [Mail(_clean_one(rng, n), "0") for n in range(count)]
