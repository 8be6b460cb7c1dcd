"""Golden transcripts (tests/golden/*.json): what to send and the exact bytes expected."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import EICAR

GOLDEN = Path(__file__).parent / "golden"


@dataclass(frozen=True)
class Transcript:
    name: str
    send: bytes
    expect: bytes
    closes: bool


def load_transcripts(data_dir: Path) -> list[Transcript]:
    subst = {
        "{dir}": str(data_dir).encode(),
        "{eicar_len}": str(len(EICAR)).encode(),
        "{eicar}": EICAR,
        "{long}": b"a" * 4999,
    }
    out = []
    for path in sorted(GOLDEN.glob("*.json")):
        spec = json.loads(path.read_text())
        send = b""
        expect = b""
        for request, reply in spec["exchanges"]:
            req, rep = request.encode(), reply.encode()
            for key, value in subst.items():
                req, rep = req.replace(key.encode(), value), rep.replace(key.encode(), value)
            send += req
            expect += rep
        out.append(Transcript(path.stem, send, expect, spec["closes"]))
    return out


def splits(data: bytes, mode: str, seed: int = 0) -> Iterator[bytes]:
    """``whole``, ``bytewise`` or seeded ``random`` chunks of ``data``."""
    if mode == "whole":
        yield data
    elif mode == "bytewise":
        for i in range(len(data)):
            yield data[i : i + 1]
    else:
        rng = random.Random(seed)
        i = 0
        while i < len(data):
            n = rng.randint(1, 64)
            yield data[i : i + n]
            i += n


def make_golden_files(d: Path) -> None:
    """The files the transcripts name, under ``d``."""
    (d / "eicar.com").write_bytes(EICAR)
    (d / "plain.txt").write_text("Hello, this is a plain business mail.\n")
    deep = d / "tree" / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "payload.bin").write_bytes(b"prefix " + EICAR + b" suffix")
    (d / "tree" / "a" / "clean.txt").write_text("nothing here")
    clean = d / "cleantree" / "x"
    clean.mkdir(parents=True)
    (clean / "one.txt").write_text("one")
