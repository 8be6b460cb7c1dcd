"""The package's unit passes systemd-analyze verify, man pages included; the man
pages (debian/make-manpages) render without a groff warning."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def manpages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("man")
    subprocess.run([sys.executable, str(REPO / "debian" / "make-manpages"), str(out)],
                   check=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    return out


def test_every_page_is_made(manpages: Path) -> None:
    made = sorted(str(p.relative_to(manpages)) for p in manpages.glob("man*/*"))
    assert made == ["man1/scand-pipe.1", "man1/scand-qfilter.1", "man1/scand-queue.1",
                    "man1/scand-scan.1", "man5/scand.toml.5", "man8/scand.8"]
    # One source each: the client's --help, and every key of examples/scand.toml.
    assert "--spool-dir DIR" in (manpages / "man1/scand-queue.1").read_text()
    assert "max_stream_bytes" in (manpages / "man5/scand.toml.5").read_text()


@pytest.mark.skipif(shutil.which("man") is None, reason="no man")
def test_pages_render_without_warnings(manpages: Path) -> None:
    for page in manpages.glob("man*/*"):
        done = subprocess.run(["man", "--warnings=all", "-l", str(page)], capture_output=True,
                              text=True, timeout=60, check=False,
                              env={**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"})
        assert done.returncode == 0 and done.stderr == "", f"{page}: {done.stderr}"
        assert "NAME" in done.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_package_unit_verifies(manpages: Path, tmp_path: Path) -> None:
    unit = tmp_path / "scand.service"
    # verify insists that ExecStart exists: this interpreter stands in for /usr/bin/scand.
    unit.write_text((REPO / "debian" / "scand.service").read_text()
                    .replace("/usr/bin/scand", sys.executable))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={**os.environ, "MANPATH": str(manpages)})
    assert done.returncode == 0 and done.stderr == "", done.stdout + done.stderr
