"""An mbox holds several messages: every one is walked, not only the first."""

from __future__ import annotations

import base64

import pytest

from scand import config as C
from scand.content import Part, walk
from scand.engines.base import load_engine
from scand.events import Clean, Infected
from scand.worker.scanner import Scanner

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def message(n: int, name: str, payload: bytes, eol: bytes = b"\n") -> bytes:
    b = f"b{n}"
    text = (f"From sender@example.org Mon Dec  7 10:0{n}:00 2026\n"
            f"From: a@example.org\nTo: c@example.org\nSubject: m{n}\nMIME-Version: 1.0\n"
            f"Content-Type: multipart/mixed; boundary=\"{b}\"\n\n"
            f"--{b}\nContent-Type: text/plain\n\nhello {n}\n"
            f"--{b}\nContent-Type: application/octet-stream; name=\"{name}\"\n"
            f"Content-Transfer-Encoding: base64\n\n").encode()
    text += base64.encodebytes(payload) + f"--{b}--\n\n".encode()
    return text.replace(b"\n", eol)


def scan(data: bytes) -> object:
    cfg = C.from_mapping({"engine": {"name": "builtin"}})
    return Scanner(load_engine(cfg), cfg).scan_stream(data).verdict


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
@pytest.mark.parametrize("where", [1, 2, 3])
def test_a_virus_in_any_message_of_an_mbox(eol: bytes, where: int) -> None:
    box = b"".join(message(n, f"f{n}.bin", EICAR if n == where else b"clean " * 40, eol)
                   for n in (1, 2, 3))
    verdict = scan(box)
    assert isinstance(verdict, Infected), verdict
    assert verdict.name == "Eicar-Test-Signature"


def test_a_banned_name_in_a_later_message_of_an_mbox() -> None:
    box = message(1, "report.pdf", b"clean " * 40) + message(2, "invoice.pdf.exe", b"MZ")
    verdict = scan(box)
    assert isinstance(verdict, Infected) and verdict.name.startswith("Banned."), verdict


def test_from_lines_inside_one_message_still_read_it_whole() -> None:
    # A "From " line in the text part is no message of its own: the whole reading
    # still reaches the attachment after it, and the text alone is clean.
    one = message(1, "f.bin", EICAR).replace(b"hello 1\n", b"hello\nFrom the team\nbye\n")
    assert isinstance(scan(one), Infected)
    clean = message(1, "f.bin", b"clean " * 40).replace(
        b"hello 1\n", b"hello\nFrom the team\nFrom: nobody\nbye\n")
    assert isinstance(scan(clean), Clean)


def test_each_later_message_is_its_own_entry_in_the_walk() -> None:
    box = b"".join(message(n, f"f{n}.bin", b"clean " * 40) for n in (1, 2, 3))
    cfg = C.from_mapping({})
    names = {name for item in walk(box, "", cfg.content) if isinstance(item, Part)
             for name in item.names}
    assert {"f1.bin", "f2.bin", "f3.bin"} <= names
