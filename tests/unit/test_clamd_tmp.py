"""The managed clamd's temp directory: on /dev/shm when it is a large enough tmpfs, in a
directory named after the run directory that must be ours alone; else <run_dir>/tmp."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scand import config as configmod
from scand.clamd import supervisor
from scand.clamd.supervisor import ManagedClamd, private_dir, shm_tmp_dir
from scand.config import Config


def managed(tmp_path: Path, shm: Path | None, monkeypatch: pytest.MonkeyPatch) -> ManagedClamd:
    monkeypatch.setattr(supervisor, "find_binary", lambda name: "/bin/true")
    monkeypatch.setattr(supervisor, "shm_tmp_dir", lambda config, run_dir: shm)
    cfg = configmod.override(Config(), "engine", name="clamd", signatures=str(tmp_path))
    cfg = configmod.override(cfg, "clamd", run_dir=str(tmp_path / "run"))
    return ManagedClamd(cfg)


def test_shm_dir_is_named_after_the_run_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor.tmpdir, "default_parent", lambda config: "/dev/shm")
    a = shm_tmp_dir(Config(), Path("/run/scand/scand-clamd"))
    b = shm_tmp_dir(Config(), Path("/run/other/scand-clamd"))
    assert a is not None and b is not None and a != b
    assert a.parent == Path("/dev/shm") and a.name.startswith("scand-clamd-")
    assert a == shm_tmp_dir(Config(), Path("/run/scand/scand-clamd"))  # stable
    monkeypatch.setattr(supervisor.tmpdir, "default_parent", lambda config: "/tmp")
    assert shm_tmp_dir(Config(), Path("/run/scand/scand-clamd")) is None


def test_private_dir(tmp_path: Path) -> None:
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o700)
    assert private_dir(ours, os.getuid())
    assert not private_dir(ours, os.getuid() + 1)  # someone else's
    os.chmod(ours, 0o755)
    assert not private_dir(ours, os.getuid())  # others may enter
    (tmp_path / "link").symlink_to(ours)
    os.chmod(ours, 0o700)
    assert not private_dir(tmp_path / "link", os.getuid())
    assert not private_dir(tmp_path / "missing", os.getuid())


def test_prepare_uses_the_shm_dir_when_it_is_ours(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    shm = tmp_path / "shm-ours"
    m = managed(tmp_path, shm, monkeypatch)
    m.prepare(None)
    assert m.tmp_dir == shm and private_dir(shm, os.getuid())
    conf = supervisor.render_conf(m.config, "/s", "/l", str(m.tmp_dir))
    assert f"TemporaryDirectory {shm}\n" in conf


def test_prepare_refuses_a_planted_shm_dir(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    shm = tmp_path / "shm-planted"
    shm.mkdir(mode=0o777)  # pre-created by someone, open to all
    os.chmod(shm, 0o777)
    m = managed(tmp_path, shm, monkeypatch)
    m.prepare(None)
    assert m.tmp_dir == tmp_path / "run" / "tmp"


def test_no_shm_keeps_the_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    m = managed(tmp_path, None, monkeypatch)
    m.prepare(None)
    assert m.tmp_dir == tmp_path / "run" / "tmp"


def test_prepare_refuses_a_planted_symlink(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    shm = tmp_path / "shm-link"
    shm.symlink_to(target)  # pointing where its planter wants clamd's files
    m = managed(tmp_path, shm, monkeypatch)
    m.prepare(None)
    assert m.tmp_dir == tmp_path / "run" / "tmp"
