"""Every path from a client is an answer, never an exception (worker and clamd walk).

NUL bytes, invalid UTF-8, over-long names and paths, link loops, a 1,500-link
chain (deeper than Python's recursion limit), races, and paths outside
``allowed_roots`` that must answer the same whether they exist or not.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from scand import config as configmod
from scand.config import Config
from scand.engines.builtin import BuiltinEngine
from scand.engines.signatures import HashDB
from scand.events import Clean, Reason, Unchecked, Verdict
from scand.fronts.clamd_walk import inspect, list_tree
from scand.worker.scanner import Scanner

CHAIN = 1500  # more links than Python's recursion limit (os.path.realpath recursed)


def scanner(roots: tuple[str, ...] = ()) -> Scanner:
    cfg = configmod.override(Config(), "server", allowed_roots=list(roots))
    return Scanner(BuiltinEngine(HashDB()), cfg)


def verdict(path: str, roots: tuple[str, ...] = ()) -> Verdict:
    return scanner(roots).scan_path(path).verdict


def chain(base: Path, n: int = CHAIN) -> Path:
    (base / "f").write_text("clean\n")
    os.symlink("f", base / "l0")
    for i in range(1, n + 1):
        os.symlink(f"l{i - 1}", base / f"l{i}")
    return base / f"l{n}"


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[list[str]]:
    """Paths that broke a path operation somewhere: each must be an unscanned answer."""
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    top = chain(tmp_path)
    yield [
        f"{tmp_path}/x\0y",
        "/etc/passwd\0x",
        str(tmp_path).encode() .decode() + "/\udcff\udcfe",  # undecodable bytes (surrogateescape)
        str(tmp_path) + "/\ud800",  # a surrogate no file system name encodes to
        f"{tmp_path}/{'n' * 300}",  # ENAMETOOLONG: one name over NAME_MAX
        "/" + "/".join(["d" * 200] * 30),  # ENAMETOOLONG: the whole path over PATH_MAX
        f"{tmp_path}/loop_a",
        f"{tmp_path}/loop_a/x",
        str(top),
        f"{top}/x",
        "relative/path",
    ]


def test_worker_answers_every_hostile_path(hostile: list[str], tmp_path: Path) -> None:
    for roots in ((), (str(tmp_path),)):
        for path in hostile:
            v = verdict(path, roots)
            assert isinstance(v, Unchecked), (path, v)


def test_clamd_walk_answers_every_hostile_path(hostile: list[str], tmp_path: Path) -> None:
    for roots in ((), (str(tmp_path),)):
        for path in hostile:
            top = inspect(path, roots)
            assert top.kind in ("missing", "refused"), (path, top)


def test_long_chain_in_a_tree(tmp_path: Path) -> None:
    """CONTSCAN/MULTISCAN and the worker's tree walk meet the chain as an entry."""
    d = tmp_path / "d"
    d.mkdir()
    chain(d)
    roots = (str(tmp_path),)
    found = dict(list_tree(str(d), roots, 10_000, 8))
    assert found[f"{d}/f"] is None  # the real file is scanned
    assert isinstance(found[f"{d}/l{CHAIN}"], Unchecked)
    assert found[f"{d}/l10"] is None  # a short chain is followed (to f)
    v = verdict(str(d), (str(tmp_path),))
    assert isinstance(v, Unchecked) and v.reason == Reason.NOT_ALLOWED


def test_real_path_is_total(tmp_path: Path) -> None:
    from scand.worker.paths import real_path
    top = chain(tmp_path)
    assert real_path(str(top)) is None
    assert real_path(f"{tmp_path}/l10") == str(tmp_path / "f")
    assert real_path(f"{tmp_path}/missing/../x") == f"{tmp_path}/x"
    assert real_path("/a\0b") is None
    assert real_path("rel") is None
    assert real_path("/") == "/"


def test_outside_roots_no_existence_oracle(tmp_path: Path) -> None:
    """Missing and existing paths outside the roots get byte-identical answers,
    directly, through ``..`` and through a link inside the roots."""
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "exists").write_text("secret\n")
    (root / "to_exists").symlink_to(outside / "exists")
    (root / "to_missing").symlink_to(outside / "missing")
    (root / "to_dir").symlink_to(outside)
    roots = (str(root),)
    pairs = [
        (f"{outside}/exists", f"{outside}/missing"),
        (f"{root}/../outside/exists", f"{root}/../outside/missing"),
        ("/etc/passwd", "/etc/no-such-file-here"),
        (f"{outside}/exists/x", f"{outside}/missing/x"),
    ]
    for a, b in pairs:
        va, vb = verdict(a, roots), verdict(b, roots)
        assert va == Unchecked(Reason.NOT_ALLOWED, a) and vb == Unchecked(Reason.NOT_ALLOWED, b)
        ta, tb = inspect(a, roots), inspect(b, roots)
        assert (ta.kind, ta.verdict) == ("refused", Unchecked(Reason.NOT_ALLOWED, a))
        assert (tb.kind, tb.verdict) == ("refused", Unchecked(Reason.NOT_ALLOWED, b))
    for name in ("to_exists", "to_missing", "to_dir/exists", "to_dir/missing"):
        path = f"{root}/{name}"
        assert verdict(path, roots) == Unchecked(Reason.NOT_ALLOWED, path), name
        assert inspect(path, roots).verdict == Unchecked(
            Reason.NOT_ALLOWED, path), name


def test_root_given_through_a_symlink(tmp_path: Path) -> None:
    """A root configured through a link still admits paths written through it."""
    real = tmp_path / "real"
    real.mkdir()
    (real / "f").write_text("clean\n")
    (tmp_path / "alias").symlink_to(real)
    roots = (str(tmp_path / "alias"),)
    assert isinstance(verdict(f"{tmp_path}/alias/f", roots), Clean)
    assert isinstance(verdict(f"{real}/f", roots), Clean)


def test_swapped_while_resolving(tmp_path: Path) -> None:
    """A thread flips a link between a file, a directory, a loop and a long chain
    while requests resolve it: every answer is a verdict, never an exception."""
    (tmp_path / "file").write_text("clean\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inner").write_text("clean\n")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "chain").mkdir()
    long_top = chain(tmp_path / "chain")
    (tmp_path / "x").mkdir()
    link = tmp_path / "x" / "flip"
    targets = [tmp_path / "file", tmp_path / "dir", tmp_path / "loop", long_top, Path("/etc")]
    stop = threading.Event()

    def flip() -> None:
        i = 0
        while not stop.is_set():
            tmp = tmp_path / f"flip.{i % 2}"  # outside x/: the walk sees only the link
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(targets[i % len(targets)])
            os.replace(tmp, link)
            i += 1

    thread = threading.Thread(target=flip, daemon=True)
    thread.start()
    roots = (str(tmp_path),)
    s = scanner((str(tmp_path),))
    try:
        for _ in range(200):
            inspect(str(link), roots)
            list_tree(str(tmp_path / "x"), roots, 10_000, 8)
            v = s.scan_path(str(link)).verdict
            assert isinstance(v, Clean | Unchecked), v
            list_tree(f"{link}/", roots, 10_000, 8)
    finally:
        stop.set()
        thread.join()


def test_deep_tree_under_a_large_max_depth(tmp_path: Path) -> None:
    """The clamd walk is iterative: 1,100 levels under max_depth 5000 are walked."""
    levels = [tmp_path]
    for _ in range(1100):
        levels.append(levels[-1] / "d")
        os.mkdir(levels[-1])
    deep = levels[-1]
    (deep / "f").write_text("clean\n")
    try:
        found = list_tree(str(tmp_path), (str(tmp_path),), 10_000, 5000)
        assert found == [(f"{deep}/f", None)]
        limited = list_tree(str(tmp_path), (str(tmp_path),), 10_000, 3)
        assert len(limited) == 1 and isinstance(limited[0][1], Unchecked)
        assert limited[0][1].reason == Reason.TOO_DEEP
    finally:  # shutil.rmtree (pytest's clean-up) recurses: too deep for it
        (deep / "f").unlink()
        for level in reversed(levels[1:]):
            level.rmdir()


def test_directory_listed_where_it_resolved(tmp_path: Path) -> None:
    """A link swapped between the check and the listing: the walk lists the directory
    the check saw (shown under the client's path), not the new target."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one").write_text("clean\n")
    (tmp_path / "b").mkdir()
    for i in range(5):
        (tmp_path / "b" / f"other{i}").write_text("clean\n")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "a")
    roots = (str(tmp_path),)
    top = inspect(str(link), roots)
    assert top.kind == "dir"
    link.unlink()
    link.symlink_to(tmp_path / "b")
    assert list_tree(top.shown, roots, 100, 8, top.real) == [(f"{link}/one", None)]
