"""./scripts/serve: no reinstall when nothing changed; ClamAV only for an engine that needs it.

Run on a copy of the scripts and of what the install is made of, with a stand-in
interpreter in the virtualenv that records each ``pip install``, so nothing is
installed for real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def copy_tree(tmp: Path) -> Path:
    root = tmp / "repo"
    shutil.copytree(ROOT / "scripts", root / "scripts")
    shutil.copytree(ROOT / "clients", root / "clients",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "setup.py"):
        shutil.copy2(ROOT / name, root / name)
    venv = root / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text(f'#!/bin/sh\necho "$*" >> "{tmp}/pip.log"\n')
    (venv / "python").chmod(0o755)
    return root


def make_venv(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", 'source scripts/_env.sh && make_venv ""'], cwd=root,
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHON": "python3"})


def test_make_venv_reinstalls_only_when_the_install_changed(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    log = tmp_path / "pip.log"
    assert make_venv(root).returncode == 0
    assert log.read_text().count("pip install") == 1
    assert make_venv(root).returncode == 0  # nothing changed: no pip
    assert log.read_text().count("pip install") == 1
    with open(root / "clients" / "core.py", "a") as fh:  # the console scripts are built from it
        fh.write("\n# changed\n")
    assert make_venv(root).returncode == 0
    assert log.read_text().count("pip install") == 2


def needs_clamav(tmp_path: Path, *args: str) -> bool:
    done = subprocess.run(
        ["bash", "-c", 'eval "$(sed -n "/^needs_clamav()/,/^}/p" scripts/serve)"; '
         'needs_clamav "$@"', "serve", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    return done.returncode == 0


def test_clamav_only_for_the_clamd_engine(tmp_path: Path) -> None:
    conf = tmp_path / "clamd.toml"
    conf.write_text('[engine]\nname = "clamd"\n')
    builtin = tmp_path / "builtin.toml"
    builtin.write_text('[engine]\nname = "builtin"\n')
    assert needs_clamav(tmp_path, "--engine", "clamd")
    assert needs_clamav(tmp_path, "--engine=clamd")
    assert needs_clamav(tmp_path, "--config", str(conf))
    assert needs_clamav(tmp_path, f"--config={conf}")
    assert not needs_clamav(tmp_path)  # engine auto: ClamAV when the host has it, never installed
    assert not needs_clamav(tmp_path, "--engine", "auto")
    assert not needs_clamav(tmp_path, "--socket", "/tmp/s", "--engine", "builtin")
    assert not needs_clamav(tmp_path, "--config", str(builtin))
