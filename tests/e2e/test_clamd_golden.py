"""Golden clamd transcripts (recorded from the real clamd 1.4.6) replayed against scand's
clamd front: whole, byte by byte and in random splits, with the same signatures
(scand's clamd engine on the same signature directory) and the same limits.

Identical bytes, except the lines scand deliberately answers ERROR
(``tests.clamd_golden_util.DELIBERATE``), each because clamd says OK for
something it did not scan:

* ``{scan,contscan,multiscan,allmatchscan}-over.txt`` and ``-over-eicar.com``:
  the file is over MaxFileSize / ``limits.max_file_size``. clamd (AlertExceedsMax
  no, its default) answers OK without reading it, and so misses the EICAR
  string at the start of over-eicar.com; scand answers ``too-large ERROR``.
* ``fildes-over``: the same file through FILDES.

Normalized on both sides: the tree's path (``{root}``) and descriptor numbers
(``fd[N]``: a number in the daemon's own descriptor table). Pipelined IDSESSION
replies are compared as a multiset of lines, because clamd itself answers them
in any order.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clamd_golden_util import (
    CLAMD_CONF,
    DELIBERATE,
    SCAND_CONF,
    TRANSCRIPTS,
    cases,
    exchange,
    extra_cases,
    make_tree,
    normalize,
    packets,
    record,
    reply_lines,
    split,
    write_sigs,
)
from tests.conftest import Daemon, launch

CLAMD = shutil.which("clamd") or shutil.which("clamd", path="/usr/sbin")
GOLDEN = json.loads(TRANSCRIPTS.read_text())
ALL = cases() + extra_cases()


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[Path, Path]]:
    assert CLAMD, "clamd not installed: run ./scripts/test (installs clamav-daemon)"
    work = Path(tempfile.mkdtemp(prefix="scand-cg-", dir="/tmp"))
    work.chmod(0o755)
    (work / "sigs").mkdir()
    write_sigs(work / "sigs")
    make_tree(work / "t")
    yield work, work / "t"
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def scand_front(env: tuple[Path, Path]) -> Iterator[str]:
    work, _ = env
    sock = str(work / "front.ctl")
    daemon: Daemon = launch(work, 0, "--engine", "clamd", "--signatures", str(work / "sigs"),
                            "--clamd-socket", sock, config=SCAND_CONF, ready_timeout=120)
    try:
        yield sock
    finally:
        daemon.stop()


def expected(name: str) -> str:
    return DELIBERATE.get(name, GOLDEN["replies"][name])


def check(name: str, compare: str, got: str) -> None:
    want = expected(name)
    if compare == "lines":
        assert reply_lines(got) == reply_lines(want), name
    else:
        assert got == want, name


@pytest.mark.parametrize("how", ["whole", "bytes", "random"])
def test_replay(scand_front: str, env: tuple[Path, Path], how: str) -> None:
    _, root = env
    rng = random.Random(1729)
    for case in ALL:
        parts = split(packets(case["send"], str(root)), how, rng)
        got = normalize(exchange(scand_front, parts), str(root))
        check(case["name"], case["compare"], got)


def test_deliberate_differences_are_listed() -> None:
    """Every place scand differs is a clamd OK that scand turns into ERROR, nothing else."""
    for name, ours in DELIBERATE.items():
        theirs = GOLDEN["replies"][name]
        assert theirs.rstrip("\0\n").endswith(": OK"), (name, theirs)
        assert ours.rstrip("\0\n").endswith(" ERROR"), (name, ours)
    assert set(GOLDEN["replies"]) == {c["name"] for c in ALL}


@pytest.mark.slow
def test_golden_file_matches_live_clamd(env: tuple[Path, Path]) -> None:
    """The stored transcripts are what Debian's clamd 1.4.6 says today."""
    work, root = env
    sock = str(work / "real.ctl")
    conf = work / "clamd.conf"
    conf.write_text(f"Foreground yes\nLocalSocket {sock}\nDatabaseDirectory {work}/sigs\n"
                    f"LogFile {work}/clamd.log\nTemporaryDirectory {work}\n{CLAMD_CONF}")
    assert CLAMD
    proc = subprocess.Popen([CLAMD, "--foreground", f"--config-file={conf}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "clamd did not start"
            try:
                if exchange(sock, [b"zPING\0"], 2) == b"PONG\0":
                    break
            except OSError:
                time.sleep(0.1)
        live = record(sock, str(root))
    finally:
        proc.kill()
        proc.wait(10)
    for case in ALL:
        name = case["name"]
        if case["compare"] == "lines":
            assert reply_lines(live[name]) == reply_lines(GOLDEN["replies"][name]), name
        else:
            assert live[name] == GOLDEN["replies"][name], name
