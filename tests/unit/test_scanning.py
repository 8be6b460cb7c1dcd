"""The worker-side scanner: paths, roots, limits, file types (no daemon)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scand import config as configmod
from scand.config import Config
from scand.engines.builtin import BuiltinEngine
from scand.engines.signatures import HashDB
from scand.events import CLEAN, Infected, Reason, Unchecked
from scand.worker.paths import within_roots
from scand.worker.scanner import Scanner
from tests.conftest import EICAR


def scanner(**limits: int) -> Scanner:
    cfg = configmod.override(Config(), "limits", **limits)
    return Scanner(BuiltinEngine(HashDB()), cfg)


def reason(path: Path | str, s: Scanner | None = None) -> str:
    v = (s or scanner()).scan_path(str(path)).verdict
    assert isinstance(v, Unchecked), v
    return str(v.reason)


def test_roots() -> None:
    assert within_roots("/var/spool/x", ("/var/spool",))
    assert within_roots("/var/spool", ("/var/spool/",))
    assert not within_roots("/var/spoolx/y", ("/var/spool",))
    assert within_roots("/anything", ())
    assert within_roots("/anything", ("/",))


def test_file_types_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert reason(fifo) == "not-allowed"  # and it did not block
    assert reason("/dev/null") == "not-allowed"
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "d" / "f")
    assert reason(tmp_path / "d") == "not-allowed"


def test_limits(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * 2000)
    assert reason(big, scanner(max_file_size=1000)) == "too-large"
    many = tmp_path / "many"
    many.mkdir()
    for i in range(5):
        (many / f"f{i}").write_text("x")
    assert reason(many, scanner(max_files=3)) == "too-many-files"
    assert scanner(max_files=5).scan_path(str(many)).verdict == CLEAN
    deep = tmp_path / "deep"
    p = deep
    for i in range(6):
        p = p / str(i)
    p.mkdir(parents=True)
    (p / "f").write_text("x")
    assert reason(deep, scanner(max_depth=3)) == "too-deep"


def test_infection_beats_unchecked_and_counts(tmp_path: Path) -> None:
    d = tmp_path / "mix"
    d.mkdir()
    os.mkfifo(d / "a-fifo")
    (d / "b-virus").write_bytes(EICAR)
    out = scanner().scan_path(str(d))
    assert out.verdict == Infected("Eicar-Test-Signature")
    assert out.bytes == len(EICAR) and out.files == 1


def test_symlink_loop_terminates(tmp_path: Path) -> None:
    d = tmp_path / "loop"
    d.mkdir()
    (d / "self").symlink_to(d)
    (d / "f").write_text("clean")
    assert scanner().scan_path(str(d)).verdict == CLEAN


def test_missing_and_relative(tmp_path: Path) -> None:
    assert reason(tmp_path / "nope") == "not-found"
    assert reason(tmp_path / "nope" / "deeper") == "not-found"
    assert reason("relative") == "protocol"


def test_stream() -> None:
    assert scanner().scan_stream(EICAR).verdict == Infected("Eicar-Test-Signature")
    assert scanner().scan_stream(b"").verdict == CLEAN


def test_unreadable_is_not_not_found(tmp_path: Path) -> None:
    """Permission denied is -1:unreadable. As root, run the scanner as nobody."""
    top = tmp_path / "perm"
    top.mkdir()
    secret = top / "secret"
    secret.write_text("x")
    secret.chmod(0)
    locked = top / "locked"
    locked.mkdir()
    locked.chmod(0)
    paths = [str(secret), str(locked), str(top)]
    if os.geteuid() != 0:
        got = [str(reason(p)) for p in paths]
    else:
        # root reads everything: fork, drop to nobody, scan, report through a pipe.
        for p in (tmp_path, top):
            p.chmod(0o755)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.setgid(65534)
                os.setuid(65534)
                os.write(w, " ".join(reason(p) for p in paths).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r) as fh:
            got = fh.read().split()
        os.waitpid(pid, 0)
    assert got == [Reason.UNREADABLE, Reason.UNREADABLE, Reason.UNREADABLE]


@pytest.mark.parametrize("trailing", ["", "/"])
def test_trailing_slash(tmp_path: Path, trailing: str) -> None:
    d = tmp_path / "t" / "a" / "b" / "c"
    d.mkdir(parents=True)
    (d / "e").write_bytes(EICAR)
    v = scanner().scan_path(str(tmp_path / "t") + trailing).verdict
    assert v == Infected("Eicar-Test-Signature")


def test_symlink_swapped_after_check(tmp_path: Path) -> None:
    """TOCTOU: the file passes the check, then is replaced by a symlink out of the roots."""
    root = tmp_path / "spool"
    root.mkdir()
    outside = tmp_path / "secret"
    outside.write_bytes(EICAR)
    victim = root / "msg"
    victim.write_text("clean at check time")
    cfg = configmod.override(Config(), "server", allowed_roots=[str(root)])
    s = Scanner(BuiltinEngine(HashDB()), cfg)
    real = os.path.realpath(victim)
    checked = os.stat(real)
    victim.unlink()
    victim.symlink_to(outside)  # the swap, between check and open
    out = s._scan_one(real, checked, s.scan_path(str(root / "nothing")))
    assert isinstance(out, Unchecked) and out.reason == Reason.NOT_ALLOWED
    # a hard link to an outside file swapped in: same name, other inode
    victim.unlink()
    os.link(outside, victim)
    out = s._scan_one(real, checked, s.scan_path(str(root / "nothing")))
    assert isinstance(out, Unchecked) and out.reason == Reason.NOT_ALLOWED


def test_directory_swapped_after_check(tmp_path: Path) -> None:
    """A directory on the path becomes a symlink after the check: the opened fd is checked."""
    root = tmp_path / "spool"
    (root / "d").mkdir(parents=True)
    outside = tmp_path / "etc"
    outside.mkdir()
    (outside / "f").write_bytes(EICAR)
    cfg = configmod.override(Config(), "server", allowed_roots=[str(root)])
    s = Scanner(BuiltinEngine(HashDB()), cfg)
    real = str(root / "d" / "f")
    (root / "d").rmdir()
    (root / "d").symlink_to(outside)  # now root/d/f is the outside file
    checked = os.stat(real)  # the attacker won the race before the stat too
    out = s._scan_one(real, checked, s.scan_path(str(root / "nothing")))
    assert isinstance(out, Unchecked) and out.reason == Reason.NOT_ALLOWED
