"""The bomber's corpus: seeded, deterministic, real-mail-shaped messages spooled as files.

Every message is built from its own RNG (seeded with ``"<seed>:<index>"``), so
a corpus of 200 is the first 200 messages of a corpus of 2,000, and two runs
with the same seed write byte-identical files and manifests.

Classes, assigned per block of 100 messages at seeded positions, so that every
full block holds exactly:

* 5 infected: EICAR or ``clam.exe`` inside a base64 attachment, a zip (in a
  base64 attachment) or a uuencode block in the body, plus EICAR as a plain
  7bit text attachment (the only infection an engine sees without decoding);
* 3 banned: a clean attachment with a dangerous name (``invoice.pdf.exe``,
  ``.pif``, ``.vbs``, ...);
* 92 clean: plain text, HTML, multipart/alternative, and multipart/mixed with
  pdf-like, docx-like, zip and image attachments.

Sizes (whole message, on disk): 88% log-uniform in 2-50 KB, 10.5% log-uniform
in 50 KB-1 MB, 1.5% log-uniform in 1-10 MB. Messages over 100 KB always carry
an attachment (big mail is attachments). Infected and banned messages are drawn
from the 2-50 KB band only (worms travel small).

Files are spooled as an MTA does: ``spool/<nn>/msg-<index>.eml`` with
``nn = index % 23`` (qmail's queue split), mode 0640, LF line ends.
``manifest.json`` records for every message what it contains: each infection
(signature, file name, the encoding layers around it) and each banned
attachment (file name, rule). Which verdict an engine owes follows from that
and from what the engine decodes (see ``bench/verdicts.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.mailparts import (
    b64,
    clean_attachment,
    headers,
    html,
    make_zip,
    multipart,
    part,
    text,
    uuencode,
)

# Bump when the bytes a seed produces change, so a cached corpus is rebuilt.
GENERATOR_VERSION = 1
BLOCK = 100
INFECTED_PER_BLOCK = 5
BANNED_PER_BLOCK = 3
QMAIL_SPLIT = 23
KB = 1000
MB = 1000 * KB
# (weight, low, high): log-uniform bands of the whole message size in bytes.
SIZE_BANDS = ((0.88, 2 * KB, 50 * KB), (0.105, 50 * KB, 1 * MB), (0.015, 1 * MB, 10 * MB))
ATTACH_ABOVE = 100 * KB

# Built from two halves so this source file is not itself an EICAR test file.
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
CLAM_EXE = Path("/usr/share/clamav-testfiles/clam.exe")
# What the signature set built by write_signatures() names each payload.
SIG_NAMES = {"eicar": "Eicar-Test-Signature", "clam.exe": "ClamAV-Test-File"}

# Infection variants: (key, payload, attachment/member name, layers). Names are
# deliberately harmless, so a policy hit never hides a signature miss.
INFECTED_VARIANTS = (
    ("eicar-b64", "eicar", "eicar.dat", ("base64",)),
    ("eicar-zip", "eicar", "eicar.dat", ("base64", "zip")),
    ("eicar-uu", "eicar", "eicar.dat", ("uuencode",)),
    ("eicar-raw", "eicar", "eicar.txt", ()),
    ("clam-b64", "clam.exe", "setup.dat", ("base64",)),
    ("clam-zip", "clam.exe", "setup.dat", ("base64", "zip")),
    ("clam-uu", "clam.exe", "setup.dat", ("uuencode",)),
)
# Banned attachments: (file name, rule as scand's policy names it).
BANNED_NAMES = (
    ("invoice.pdf.exe", "DoubleExtension"),
    ("document.pif", "Extension"),
    ("LOVE-LETTER-FOR-YOU.TXT.vbs", "DoubleExtension"),
    ("photo.jpg.scr", "DoubleExtension"),
    ("update.bat", "Extension"),
    ("readme.doc.com", "DoubleExtension"),
    ("setup.cmd", "Extension"),
)
# Indexes of the extra messages (flood copies, chaos markers): outside any corpus.
FLOOD_INDEX = 10_000_000
CHAOS_INDEX = 20_000_000


@dataclass
class Message:
    """One generated message and its labels (what is inside, not what to answer)."""

    index: int
    kind: str
    cls: str  # "infected" | "banned" | "clean"
    data: bytes = b""
    infections: list[dict[str, Any]] = field(default_factory=list)
    banned: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)
    target: int = 0


def clam_exe() -> bytes:
    """ClamAV's harmless test executable; a stand-in blob when clamav-testfiles is missing."""
    try:
        return CLAM_EXE.read_bytes()
    except OSError:
        return b"MZ" + hashlib.sha256(b"scand-bench-clam-stand-in").digest() * 16


def payload(sig: str) -> bytes:
    return EICAR if sig == "eicar" else clam_exe()


def write_signatures(directory: Path) -> Path:
    """A signature set that names both payloads: EICAR body (.ndb) and clam.exe's MD5 (.hdb).

    The built-in engine reads the .hdb (and has EICAR built in); clamd reads both.
    """
    directory.mkdir(parents=True, exist_ok=True)
    clam = clam_exe()
    (directory / "bench.hdb").write_text(
        f"{hashlib.md5(clam).hexdigest()}:{len(clam)}:{SIG_NAMES['clam.exe']}\n")
    (directory / "bench.ndb").write_text(f"{SIG_NAMES['eicar']}:0:*:{EICAR.hex()}\n")
    return directory


def pick_size(rng: random.Random) -> int:
    u = rng.random()
    band = SIZE_BANDS[-1]
    for band in SIZE_BANDS:  # the band u falls in (float rounding: the last)
        if u < band[0]:
            break
        u -= band[0]
    return int(math.exp(rng.uniform(math.log(band[1]), math.log(band[2]))))


# -- one message -----------------------------------------------------------------------------


def build(index: int, seed: int, cls: str, slot: int) -> Message:
    """Message ``index``; ``slot`` picks the infection variant or banned name in turn.

    The drawn size is the target for the whole file: a message that came out
    short is built again with its text longer by the shortfall.
    """
    extra = 0
    for _ in range(4):
        msg = _build(index, seed, cls, slot, extra)
        short = msg.target - len(msg.data)
        if short <= 0:
            break
        extra += short
    return msg


def _build(index: int, seed: int, cls: str, slot: int, extra: int) -> Message:
    rng = random.Random(f"{seed}:{index}")
    target = pick_size(rng) if cls == "clean" else int(
        math.exp(rng.uniform(math.log(2 * KB), math.log(50 * KB))))
    size = target + extra
    msg = _content(rng, index, seed, cls, slot, size)
    msg.target = target
    return msg


def _content(rng: random.Random, index: int, seed: int, cls: str, slot: int,
             size: int) -> Message:
    boundary = f"=_bench_{index}_{rng.getrandbits(32):08x}"
    mixed = f'multipart/mixed; boundary="{boundary}"'
    if cls == "infected":
        key, sig, name, layers = INFECTED_VARIANTS[slot % len(INFECTED_VARIANTS)]
        msg = Message(index, f"infected:{key}", cls)
        msg.infections.append({"sig": sig, "name": SIG_NAMES[sig], "file": name,
                               "layers": list(layers)})
        note = text(rng, max(size - 1500, 200))
        data = payload(sig)
        if layers == ("uuencode",):
            body = note + "\n" + uuencode(data, name) + "\n"
            msg.data = (headers(rng, index, seed, "text/plain; charset=us-ascii") + "\n"
                        + body).encode()
            msg.attachments.append(name)
            return msg
        if layers == ():
            att = part("text/plain", data.decode("ascii") + "\n", "7bit", name)
        elif "zip" in layers:
            zname = f"files-{index}.zip"
            att = part("application/zip", b64(make_zip([(name, data)])), "base64", zname)
            msg.attachments.append(zname)
        else:
            att = part("application/octet-stream", b64(data), "base64", name)
        msg.attachments.append(name)
        msg.data = (headers(rng, index, seed, mixed) + "\n"
                    + multipart(boundary, [part("text/plain", note), att])).encode()
        return msg
    if cls == "banned":
        name, rule = BANNED_NAMES[slot % len(BANNED_NAMES)]
        msg = Message(index, "banned", cls)
        msg.banned.append({"file": name, "rule": rule, "layers": []})
        msg.attachments.append(name)
        blob = b"MZ\x90\x00" + rng.randbytes(rng.randint(2 * KB, 20 * KB))
        att = part("application/octet-stream", b64(blob), "base64", name)
        note = text(rng, max(size - len(blob) * 4 // 3 - 1000, 200))
        msg.data = (headers(rng, index, seed, mixed) + "\n"
                    + multipart(boundary, [part("text/plain", note), att])).encode()
        return msg
    kind = "attachment" if size > ATTACH_ABOVE else rng.choices(
        ("plain", "html", "alternative", "attachment"), weights=(40, 10, 25, 25))[0]
    msg = Message(index, kind, cls)
    if kind == "plain":
        head = headers(rng, index, seed, "text/plain; charset=us-ascii")
        msg.data = (head + "\n" + text(rng, size - len(head))).encode()
    elif kind == "html":
        head = headers(rng, index, seed, "text/html; charset=us-ascii")
        msg.data = (head + "\n" + html(text(rng, int((size - len(head)) * 0.85)))).encode()
    elif kind == "alternative":
        alt = f'multipart/alternative; boundary="{boundary}"'
        body = text(rng, (size - 800) // 2)
        msg.data = (headers(rng, index, seed, alt) + "\n" + multipart(boundary, [
            part("text/plain; charset=us-ascii", body),
            part("text/html; charset=us-ascii", html(body)),
        ])).encode()
    else:
        note = text(rng, rng.randint(300, 3000))
        name, mime, blob = clean_attachment(rng, max((size - len(note) - 1200) * 3 // 4, 256))
        msg.attachments.append(name)
        msg.data = (headers(rng, index, seed, mixed) + "\n" + multipart(boundary, [
            part("text/plain; charset=us-ascii", note),
            part(mime, b64(blob), "base64", name),
        ])).encode()
    return msg


def classes(count: int, seed: int) -> list[tuple[str, int]]:
    """(class, slot) for each index: exact quotas per block of 100, at seeded positions."""
    out: list[tuple[str, int]] = [("clean", 0)] * count
    for block in range((count + BLOCK - 1) // BLOCK):
        rng = random.Random(f"{seed}:block:{block}")
        picks = rng.sample(range(BLOCK), INFECTED_PER_BLOCK + BANNED_PER_BLOCK)
        for j, pos in enumerate(picks):
            index = block * BLOCK + pos
            if index >= count:
                continue
            if j < INFECTED_PER_BLOCK:
                out[index] = ("infected", block * INFECTED_PER_BLOCK + j)
            else:
                out[index] = ("banned", block * BANNED_PER_BLOCK + j - INFECTED_PER_BLOCK)
    return out


# -- spooling ----------------------------------------------------------------------------------


def spool_path(index: int) -> str:
    return f"spool/{index % QMAIL_SPLIT:02d}/msg-{index:06d}.eml"


def write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o640)
    os.replace(tmp, path)  # as an MTA does: the file appears complete or not at all


def entry(msg: Message, rel: str) -> dict[str, Any]:
    return {"index": msg.index, "path": rel, "size": len(msg.data), "kind": msg.kind,
            "class": msg.cls, "infections": msg.infections, "banned": msg.banned,
            "attachments": msg.attachments, "sha256": hashlib.sha256(msg.data).hexdigest()}


def generate(directory: Path, count: int, seed: int) -> dict[str, Any]:
    """Write ``count`` messages and ``manifest.json`` into ``directory``; return the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    messages = []
    for index, (cls, slot) in enumerate(classes(count, seed)):
        msg = build(index, seed, cls, slot)
        rel = spool_path(index)
        write_file(directory / rel, msg.data)
        messages.append(entry(msg, rel))
    manifest = {
        "generator": GENERATOR_VERSION, "seed": seed, "count": count,
        "clam_exe_sha256": hashlib.sha256(clam_exe()).hexdigest(),
        "size_bands": [list(b) for b in SIZE_BANDS],
        "bytes": sum(m["size"] for m in messages),
        "messages": messages,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def load_or_generate(directory: Path, count: int, seed: int) -> dict[str, Any]:
    """The manifest in ``directory`` if it matches (generator, seed, count), else a fresh corpus."""
    try:
        manifest: dict[str, Any] = json.loads((directory / "manifest.json").read_text())
        same = (manifest["generator"], manifest["seed"], manifest["count"],
                manifest["clam_exe_sha256"]) == (GENERATOR_VERSION, seed, count,
                                                  hashlib.sha256(clam_exe()).hexdigest())
        if same and all((directory / m["path"]).is_file() for m in manifest["messages"]):
            return manifest
    except (OSError, ValueError, KeyError):
        pass
    return generate(directory, count, seed)


def flood_copies(directory: Path, variant: str, copies: int, seed: int) -> list[dict[str, Any]]:
    """The Klez scenario: ``copies`` spooled copies of one infected message.

    The worm body is the same every time; only the Message-ID differs, as
    copies of one worm reaching one host differ in their envelope and headers.
    """
    slot = [v[0] for v in INFECTED_VARIANTS].index(variant)
    first = build(FLOOD_INDEX, seed, "infected", slot)
    out = []
    for k in range(copies):
        msg = build(FLOOD_INDEX, seed, "infected", slot)
        msg.index = FLOOD_INDEX + k
        msg.data = first.data.replace(b"Message-ID: <%d." % FLOOD_INDEX,
                                      b"Message-ID: <%d." % (FLOOD_INDEX + k), 1)
        rel = f"flood/{variant}/copy-{k:04d}.eml"
        write_file(directory / rel, msg.data)
        out.append(entry(msg, rel))
    return out


def chaos_message(directory: Path, fault: str, arg: str) -> dict[str, Any]:
    """A small clean message whose first line is the chaos engine's marker."""
    marker = f"SCAND-CHAOS {fault}{' ' + arg if arg else ''}\n"
    rng = random.Random(f"chaos:{fault}:{arg}")
    head = headers(rng, CHAOS_INDEX, 0, "text/plain; charset=us-ascii")
    msg = Message(CHAOS_INDEX, f"chaos:{fault}", "clean")
    msg.data = (marker + head + "\n" + text(rng, 4 * KB)).encode()
    rel = f"chaos/{fault}-{arg or 'x'}.eml"
    write_file(directory / rel, msg.data)
    out = entry(msg, rel)
    out["chaos"] = fault
    return out
