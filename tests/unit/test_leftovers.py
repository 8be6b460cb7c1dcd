"""The daemon removes what a dead worker's engine reported (Engine.leftovers), and
nothing a lying worker could point it at."""

from __future__ import annotations

import os
from pathlib import Path

from scand.engines.builtin import BuiltinEngine
from scand.engines.signatures import HashDB
from scand.pool.process import remove_leftovers


def test_only_the_workers_own_directories(tmp_path: Path) -> None:
    pid, uid = 4242, os.getuid()
    mine = tmp_path / f"worker-{pid}"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "part").write_text("x")
    other = tmp_path / "worker-4243"
    other.mkdir()
    precious = tmp_path / "precious"
    precious.mkdir()
    link = tmp_path / f"link-{pid}"
    link.symlink_to(precious)
    not_theirs = tmp_path / f"root-{pid}"
    not_theirs.mkdir()
    remove_leftovers((str(mine), str(other), str(link), "relative-4242"), pid, uid)
    remove_leftovers((str(not_theirs),), pid, uid + 1)
    assert not mine.exists()
    assert other.exists() and precious.exists() and link.is_symlink() and not_theirs.exists()


def test_engines_without_side_effects_report_none() -> None:
    assert BuiltinEngine(HashDB()).leftovers() == ()
