"""Where the clamav engine's temp files go: a tmpfs when one is there, else $TMPDIR."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from scand import config as configmod
from scand.config import Config
from scand.engines.clamav import tmpdir


def test_is_tmpfs_reads_the_visible_mount(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("tmpfs /dev/shm tmpfs rw 0 0\n/dev/vda /srv ext4 rw 0 0\n"
                      "tmpfs /srv tmpfs rw 0 0\ntmpfs /run tmpfs rw 0 0\n"
                      "/dev/vdb /run ext4 rw 0 0\n")
    assert tmpdir.is_tmpfs("/dev/shm", str(mounts))
    assert tmpdir.is_tmpfs("/srv", str(mounts))  # the later mount hides the disk
    assert not tmpdir.is_tmpfs("/run", str(mounts))  # a disk mounted over the tmpfs
    assert not tmpdir.is_tmpfs("/dev", str(mounts))  # not a mount point at all
    assert not tmpdir.is_tmpfs("/dev/shm", str(tmp_path / "missing"))


def test_default_prefers_a_writable_tmpfs(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Config()
    monkeypatch.setattr(tmpdir, "is_tmpfs", lambda path, mounts="": path == "/dev/shm")
    monkeypatch.setattr(tmpdir.os, "access", lambda path, mode: True)
    assert tmpdir.base_dir(cfg, 42) == "/dev/shm/scand-clamav-42"
    monkeypatch.setattr(tmpdir.os, "access", lambda path, mode: False)  # not ours to write
    assert tmpdir.base_dir(cfg, 42) == f"{tempfile.gettempdir()}/scand-clamav-42"
    monkeypatch.setattr(tmpdir.os, "access", lambda path, mode: True)
    monkeypatch.setattr(tmpdir, "is_tmpfs", lambda path, mounts="": False)  # a plain directory
    assert tmpdir.base_dir(cfg, 42) == f"{tempfile.gettempdir()}/scand-clamav-42"


def test_the_configured_directory_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tmpdir, "is_tmpfs", lambda path, mounts="": True)
    cfg = configmod.override(Config(), "clamav", tmp_dir="/var/tmp/scand")
    assert tmpdir.base_dir(cfg, 7) == "/var/tmp/scand"


def test_mount_table_agrees_with_statfs() -> None:
    """statfs(2)'s filesystem type (through stat -f), not the mount table, says tmpfs."""
    for path in ("/dev/shm", "/", "/proc"):
        if not os.path.isdir(path):
            continue
        kind = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True,
                              text=True, check=True).stdout.strip()
        assert tmpdir.is_tmpfs(path) == (kind == "tmpfs"), (path, kind)
