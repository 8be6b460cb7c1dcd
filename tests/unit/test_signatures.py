"""Hash signature files: formats, the size index, and errors naming file and line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from scand.engines.base import SignatureError
from scand.engines.signatures import load_hash_dir


def write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text)
    return p


def test_hdb_and_hsb(tmp_path: Path) -> None:
    a, b, c = b"alpha", b"bravo!", b"charlie"
    write(tmp_path, "one.hdb", f"# comment\n\n{hashlib.md5(a).hexdigest()}:5:Test.A\n")
    write(tmp_path, "two.hsb",
          f"{hashlib.sha1(b).hexdigest()}:6:Test.B:73\n{hashlib.sha256(c).hexdigest()}:*:Test.C\n")
    write(tmp_path, "ignored.cvd", "binary junk")
    db = load_hash_dir(str(tmp_path))
    assert db.count == 3
    assert db.lookup(a) == "Test.A"
    assert db.lookup(b) == "Test.B"
    assert db.lookup(c) == "Test.C"
    assert db.lookup(b"alphA") is None


def test_size_must_match(tmp_path: Path) -> None:
    write(tmp_path, "s.hdb", f"{hashlib.md5(b'abc').hexdigest()}:4:Wrong.Size\n")
    assert load_hash_dir(str(tmp_path)).lookup(b"abc") is None


@pytest.mark.parametrize(
    ("name", "text", "line", "words"),
    [
        ("bad.hdb", "00112233445566778899aabbccddeeff:3:Ok\nnot a sig\n", 2, "expected"),
        ("bad.hdb", "0011:3:Short\n", 1, "digest"),
        ("bad.hdb", "00112233445566778899aabbccddeeff:*:Star\n", 1, "size"),
        ("bad.hdb", "00112233445566778899aabbccddeeff:3:Has Space\n", 1, "name"),
        ("bad.hsb", "00112233445566778899aabbccddeeff:3:Md5InHsb\n", 1, ".hdb"),
        ("bad.hdb", f"{'a' * 64}:3:ShaInHdb\n", 1, ".hsb"),
        ("bad.hsb", f"{'g' * 40}:3:NotHex\n", 1, "digest"),
    ],
)
def test_bad_line_names_file_and_line(
    tmp_path: Path, name: str, text: str, line: int, words: str
) -> None:
    write(tmp_path, name, text)
    with pytest.raises(SignatureError) as info:
        load_hash_dir(str(tmp_path))
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path / name}:{line}:") and words in msg


def test_missing_directory() -> None:
    with pytest.raises(SignatureError, match="does not exist"):
        load_hash_dir("/nonexistent/sigs")
    assert load_hash_dir("").count == 0
