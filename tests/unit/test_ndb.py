"""ClamAV .ndb body signatures: the supported subset, skips, and errors naming file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from scand.engines.base import SignatureError
from scand.engines.ndb import load_ndb_dir


def db_of(tmp_path: Path, *lines: str):  # type: ignore[no-untyped-def]
    (tmp_path / "t.ndb").write_text("\n".join(lines) + "\n")
    return load_ndb_dir(str(tmp_path))


@pytest.mark.parametrize(("sig", "hit", "miss"), [
    ("deadbeef", b"xx\xde\xad\xbe\xefyy", b"\xde\xad\xbe"),
    ("dead??ef", b"\xde\xad\x00\xef", b"\xde\xad\xef"),
    ("dead*beef", b"\xde\xad" + b"z" * 500 + b"\xbe\xef", b"\xbe\xef\xde\xad"),
    ("dead{2}beef", b"\xde\xad12\xbe\xef", b"\xde\xad123\xbe\xef"),
    ("dead{1-3}beef", b"\xde\xad123\xbe\xef", b"\xde\xad1234\xbe\xef"),
    ("dead{-2}beef", b"\xde\xad\xbe\xef", b"\xde\xad123\xbe\xef"),
    ("dead{2-}beef", b"\xde\xad123456\xbe\xef", b"\xde\xad1\xbe\xef"),
    ("6162(6364|6566)6768", b"abefgh", b"abxxgh"),
])
def test_syntax(tmp_path: Path, sig: str, hit: bytes, miss: bytes) -> None:
    db = db_of(tmp_path, f"Test.Sig:0:*:{sig}")
    assert db.match(hit) == "Test.Sig"
    assert db.match(miss) is None


def test_absolute_offset(tmp_path: Path) -> None:
    db = db_of(tmp_path, "Test.Off:0:4:41424344")
    assert db.match(b"0123ABCD") == "Test.Off"
    assert db.match(b"01234ABCD") is None


def test_unsupported_lines_are_skipped_not_half_loaded(tmp_path: Path) -> None:
    db = db_of(tmp_path, "Test.Ep:1:EP+0:41424344", "Test.Nibble:0:*:4a?b4344",
               "Test.Neg:0:*:41(!42)43", "Test.Ok:0:*:41424344")
    assert db.count == 1 and db.skipped == 3
    assert db.match(b"xxABCDxx") == "Test.Ok"


@pytest.mark.parametrize(("line", "lineno"), [
    ("Bad:0:*", 2), ("Bad:0:*:zz", 2), ("Bad Name:0:*:4142", 2), ("Bad:x:*:4142", 2),
    ("Bad:0:*:41{", 2),
])
def test_bad_line_names_file_and_line(tmp_path: Path, line: str, lineno: int) -> None:
    (tmp_path / "bad.ndb").write_text(f"Ok:0:*:41424344\n{line}\n")
    with pytest.raises(SignatureError) as info:
        load_ndb_dir(str(tmp_path))
    assert str(info.value).startswith(f"{tmp_path / 'bad.ndb'}:{lineno}:")


def test_many_signatures_only_anchors_are_verified(tmp_path: Path) -> None:
    lines = [f"Test.N{i}:0:*:{i:08x}??{(i * 7919) & 0xFFFFFFFF:08x}" for i in range(5000)]
    db = db_of(tmp_path, *lines)
    assert db.count == 5000
    target = bytes.fromhex(f"{1234:08x}") + b"Q" + bytes.fromhex(f"{(1234 * 7919):08x}")
    assert db.match(b"mail body " * 100 + target) == "Test.N1234"
    assert db.match(b"mail body " * 1000) is None
