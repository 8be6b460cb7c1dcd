"""The verdict cache in front of a real clamd (managed by scand): the Klez corpus gets
every verdict right, a worm copy under new headers is a hit on its base64 body, and an
exact copy of a file is a whole-object hit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.klez import klez, write_signatures
from tests.conftest import DaemonFactory

CLAMD = shutil.which("clamd") or shutil.which("clamd", path="/usr/sbin")


@pytest.mark.slow
def test_klez_through_clamd_with_cache(scand_daemon: DaemonFactory, short_tmp: Path) -> None:
    assert CLAMD, "clamd not installed: run ./scripts/test (installs clamav-daemon)"
    sigdir = write_signatures(short_tmp / "sigs")
    d = scand_daemon("--engine", "clamd", "--signatures", str(sigdir), workers=1,
                     ready_timeout=120)
    mails = klez(40, seed=11)
    spool = short_tmp / "spool"
    spool.mkdir()
    paths = []
    for i, m in enumerate(mails):
        (spool / f"{i}.eml").write_bytes(m.data)
        paths.append(spool / f"{i}.eml")
    for _ in range(2):  # the second pass: exact copies, whole-object hits
        c = d.client(timeout=60)
        try:
            for p, m in zip(paths, mails, strict=True):
                got = c.ask(f"{p}\n".encode()).decode().strip()
                if m.expect == "0":
                    assert got == "0", (p, got)
                else:  # clamd adds .UNOFFICIAL to private signatures' names
                    assert got in (m.expect, f"{m.expect}.UNOFFICIAL"), (p, got, m.expect)
        finally:
            c.close()
    cache = d.stats()["cache"]
    assert isinstance(cache, dict)
    # One worker, one memory cache. First pass: a worm copy after the first of its
    # kind is a hit on its base64 body (learned from clamd's 1: by scanning each
    # body alone); everything else a miss. Second pass: all hits.
    worms = [m.expect for m in mails if m.expect != "0"]
    repeats = len(worms) - len(set(worms))
    assert repeats > 20
    assert cache["hits"] == 40 + repeats and cache["misses"] == 40 - repeats
