"""The real daemon on directories someone else planted (issue 24): a socket directory
made by ``nobody`` with mode 0777 (the fake-socket attack on /tmp/scand-<uid>), or a
milter spool directory made by ``nobody`` (the swapped-spill attack), stops the
daemon at start (exit 78) with an error naming the key and the path; nothing is
written to the planted directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.unit.test_safedir import plant, root_only, shared, untouched

__all__ = ["shared"]  # the fixture, re-used


def serve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scand.cli", "serve", "--workers", "1", *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@root_only
def test_planted_socket_directory_stops_the_daemon(shared: Path) -> None:
    planted = plant(shared / f"scand-{os.getuid()}")
    out = serve("--socket", str(planted / "sophie"), cwd=shared.parent)
    assert out.returncode == 78, out.stderr
    assert f"server.socket: {planted} is owned by uid 65534" in out.stderr
    untouched(planted)
    os.rmdir(planted)
    (shared / "target").mkdir(mode=0o755)
    os.symlink(shared / "target", planted)
    out = serve("--clamd-socket", str(planted / "clamd.ctl"), "--socket",
                str(shared.parent / "s"), cwd=shared.parent)
    assert out.returncode == 78 and "clamd_front.socket: " in out.stderr, out.stderr
    assert "is a symlink" in out.stderr and os.listdir(shared / "target") == []


@root_only
def test_planted_milter_spool_stops_the_daemon(shared: Path) -> None:
    planted = plant(shared / "spool")
    cfg = shared.parent / "scand.toml"
    cfg.write_text(f'[milter]\nspool_dir = "{planted}"\n')
    out = serve("--socket", str(shared.parent / "s"), "--milter-socket",
                str(shared.parent / "m"), "--config", str(cfg), cwd=shared.parent)
    assert out.returncode == 78, out.stderr
    assert f"milter.spool_dir: {planted} is owned by uid 65534" in out.stderr
    untouched(planted)
    assert not os.path.exists(shared.parent / "s")  # no socket left behind


@pytest.mark.parametrize("mode", [0o777, 0o770])
def test_own_but_loose_socket_directory_is_refused(tmp_path: Path, mode: int) -> None:
    loose = tmp_path / "run"
    loose.mkdir()
    loose.chmod(mode)
    out = serve("--socket", str(loose / "sophie"), cwd=tmp_path)
    assert out.returncode == 78 and f"mode 0{mode:o}: others can write" in out.stderr
    assert os.listdir(loose) == [] and (loose.stat().st_mode & 0o777) == mode
