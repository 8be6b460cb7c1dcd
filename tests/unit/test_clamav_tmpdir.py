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


class _Vfs:
    def __init__(self, size: int) -> None:
        self.f_frsize = 4096
        self.f_blocks = size // 4096


def test_default_prefers_a_writable_tmpfs(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = configmod.override(Config(), "pool", workers=4)
    monkeypatch.setattr(tmpdir, "is_tmpfs", lambda path, mounts="": path == "/dev/shm")
    monkeypatch.setattr(tmpdir.os, "access", lambda path, mode: True)
    monkeypatch.setattr(tmpdir.os, "statvfs", lambda path: _Vfs(24 << 30))
    assert tmpdir.base_dir(cfg, 42) == "/dev/shm/scand-clamav-42"
    # A container's 64 MiB /dev/shm is too small for one large attachment.
    monkeypatch.setattr(tmpdir.os, "statvfs", lambda path: _Vfs(64 << 20))
    assert tmpdir.base_dir(cfg, 42) == f"{tempfile.gettempdir()}/scand-clamav-42"
    # Large enough for 1 GiB, not for 4 workers x 2 x 256 MiB files.
    big = configmod.override(cfg, "limits", max_file_size=256 << 20)
    monkeypatch.setattr(tmpdir.os, "statvfs", lambda path: _Vfs(3 << 29))  # 1.5 GiB
    assert tmpdir.shm_needed(big) == 2 << 30 and tmpdir.shm_needed(cfg) == 1 << 30
    assert tmpdir.base_dir(big, 42) == f"{tempfile.gettempdir()}/scand-clamav-42"
    assert tmpdir.base_dir(cfg, 42) == "/dev/shm/scand-clamav-42"
    monkeypatch.setattr(tmpdir.os, "statvfs", lambda path: _Vfs(24 << 30))
    monkeypatch.setattr(tmpdir.os, "access", lambda path, mode: False)  # not ours to write
    assert tmpdir.base_dir(cfg, 42) == f"{tempfile.gettempdir()}/scand-clamav-42"
    monkeypatch.setattr(tmpdir.os, "access", lambda path, mode: True)
    monkeypatch.setattr(tmpdir, "is_tmpfs", lambda path, mounts="": False)  # a plain directory
    assert tmpdir.base_dir(cfg, 42) == f"{tempfile.gettempdir()}/scand-clamav-42"


def test_the_configured_directory_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tmpdir, "is_tmpfs", lambda path, mounts="": True)
    cfg = configmod.override(Config(), "clamav", tmp_dir="/var/tmp/scand")
    assert tmpdir.base_dir(cfg, 7) == "/var/tmp/scand"


def test_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """/dev/shm here is a large tmpfs (scripts/test runs on such hosts); the default
    follows what statfs says of it."""
    kind = subprocess.run(["stat", "-f", "-c", "%T %b %S", "/dev/shm"], capture_output=True,
                          text=True, check=False).stdout.split()
    large = len(kind) == 3 and kind[0] == "tmpfs" and int(kind[1]) * int(kind[2]) >= 1 << 30
    expected = "/dev/shm" if large and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    assert tmpdir.default_parent(Config()) == expected


def test_mount_table_agrees_with_statfs() -> None:
    """statfs(2)'s filesystem type (through stat -f), not the mount table, says tmpfs."""
    for path in ("/dev/shm", "/", "/proc"):
        if not os.path.isdir(path):
            continue
        kind = subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True,
                              text=True, check=True).stdout.strip()
        assert tmpdir.is_tmpfs(path) == (kind == "tmpfs"), (path, kind)
