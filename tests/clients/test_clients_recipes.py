"""The start-up recipes in examples/ and docs/CLIENTS.md are valid as written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "examples" / "systemd" / "scand.service"
RUN_FILES = [ROOT / "examples" / "daemontools" / "run",
             ROOT / "examples" / "daemontools" / "log" / "run"]
DOC = ROOT / "docs" / "CLIENTS.md"


def test_systemd_unit_kills_mixed_and_outlives_the_drain() -> None:
    text = UNIT.read_text()
    assert "\nKillMode=mixed\n" in text
    # TimeoutStopSec must exceed the daemon's default shutdown_grace (30 s).
    stop = next(line for line in text.splitlines() if line.startswith("TimeoutStopSec="))
    assert int(stop.split("=")[1]) > 30


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    # verify insists that ExecStart exists: point it at this interpreter for the check.
    unit = tmp_path / "scand.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/scand", sys.executable))
    # Its man pages come with the package (tests/package checks the package's unit with them).
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", RUN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_daemontools_run_files_are_valid_shell(path: Path) -> None:
    assert os.access(path, os.X_OK)
    done = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_doc_shows_the_recipes_the_tests_prove() -> None:
    doc = DOC.read_text()
    for needle in (
        "av_scanner = sophie:/var/run/sophie",
        "QMAILQUEUE=/usr/local/bin/scand-queue",
        "argv=/usr/local/bin/scand-pipe --socket /var/run/sophie -f ${sender} -- ${recipient}",
        "KillMode=mixed",
        "$SophieSock = '/var/run/sophie';",
        "\\&ask_daemon, [\"{}/\\n\", '/var/run/sophie'],",
    ):
        assert needle in doc, needle
