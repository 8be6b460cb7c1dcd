"""Directories nobody can plant (scand.safedir and every place that makes a directory):
a directory made by another user (the planting runs as ``nobody``), a symlink, or one
others can write in is refused naming the key, or, for scand's own default temp
directories, replaced by a fresh private one; nothing is written to, chmod'ed or
chown'ed in the planted target."""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scand import config as configmod
from scand import safedir
from scand.clamd import supervisor
from scand.clamd.supervisor import ManagedClamd
from scand.config import Config
from scand.engines.clamav import tmpdir
from scand.fronts.listen import prepare_socket_path
from scand.milter.message import make_spool_dir
from scand.safedir import UnsafeDirectory

NOBODY = pwd.getpwnam("nobody")
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="planting as nobody needs root")


def as_nobody(action: Callable[[], None]) -> None:
    """Run ``action`` in a forked child that has become ``nobody`` (the planter)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
            action()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the planting failed"


def plant(path: Path, mode: int = 0o777) -> Path:
    """``nobody`` makes ``path`` (mode ``mode``), as a local user could in /tmp."""
    def make() -> None:
        os.mkdir(path)
        os.chmod(path, mode)
    as_nobody(make)
    st = os.lstat(path)
    assert st.st_uid == NOBODY.pw_uid
    return path


def untouched(path: Path, mode: int = 0o777) -> None:
    """The planted directory kept its owner and mode, and holds nothing of ours."""
    st = os.lstat(path)
    assert st.st_uid == NOBODY.pw_uid and stat.S_IMODE(st.st_mode) == mode
    assert os.listdir(path) == []


@pytest.fixture
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A /tmp-like directory (root, 1777) that nobody can reach."""
    base = Path(os.path.realpath("/tmp")) / f"scand-sd-{os.getpid()}"
    base.mkdir()
    base.chmod(0o755)
    d = base / "shared"
    d.mkdir()
    d.chmod(0o1777)
    yield d
    import shutil

    shutil.rmtree(base, ignore_errors=True)


def test_created_private_exactly_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        assert safedir.ensure_dir(str(tmp_path / "a" / "b"), "k.key", mode=0o750)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(tmp_path / "a" / "b").st_mode) == 0o750
    assert not safedir.ensure_dir(str(tmp_path / "a" / "b"), "k.key")  # ours: reused
    assert stat.S_IMODE(os.lstat(tmp_path / "a" / "b").st_mode) == 0o750  # not chmod'ed


def test_writable_by_others_or_a_symlink_is_refused(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    with pytest.raises(UnsafeDirectory, match=r"k\.key: .*loose has mode 0777"):
        safedir.ensure_dir(str(loose), "k.key")
    assert stat.S_IMODE(loose.stat().st_mode) == 0o777  # never chmod'ed
    group = tmp_path / "group"
    group.mkdir()
    group.chmod(0o770)
    with pytest.raises(UnsafeDirectory, match="others can write"):
        safedir.ensure_dir(str(group), "k.key")
    target = tmp_path / "target"
    target.mkdir()
    target.chmod(0o755)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(UnsafeDirectory, match="link is a symlink"):
        safedir.ensure_dir(str(tmp_path / "link"), "k.key", mode=0o700)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755 and os.listdir(target) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(UnsafeDirectory, match="is not a directory"):
        safedir.ensure_dir(str(tmp_path / "file"), "k.key")


def test_a_root_sticky_directory_is_fine(tmp_path: Path) -> None:
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    if os.geteuid() == 0:  # owned by root: nobody can swap another user's entry
        safedir.ensure_dir(str(sticky), "k.key")
    else:
        with pytest.raises(UnsafeDirectory):
            safedir.ensure_dir(str(sticky), "k.key")


@root_only
def test_planted_by_nobody_is_refused_and_untouched(shared: Path) -> None:
    planted = plant(shared / "scand-x")
    with pytest.raises(UnsafeDirectory, match="owned by uid 65534"):
        safedir.ensure_dir(str(planted), "k.key")
    untouched(planted)
    # Even a tidy one (0700) is someone else's: refused.
    tidy = plant(shared / "tidy", 0o700)
    with pytest.raises(UnsafeDirectory, match="owned by uid 65534"):
        safedir.ensure_dir(str(tidy), "k.key")
    # Unless it belongs to the user a root daemon drops to.
    safedir.ensure_dir(str(tidy), "k.key", owners=(NOBODY.pw_uid,))


@root_only
def test_default_temp_dir_planted_is_replaced_by_a_fresh_one(shared: Path) -> None:
    planted = plant(shared / "scand-clamav-0")
    fresh, why = safedir.private_or_fresh(str(planted), "clamav.tmp_dir")
    assert fresh != str(planted) and "owned by uid 65534" in why
    st = os.lstat(fresh)
    assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o700
    assert os.path.dirname(fresh) == str(shared)
    untouched(planted)


# -- every place that makes a directory --------------------------------------------------

@root_only
def test_socket_directory_planted_symlinked_or_loose_is_refused(
        shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default $XDG_RUNTIME_DIR/scand (and /tmp/scand-<uid>, the same call)."""
    monkeypatch.setattr(configmod.os, "access", lambda path, mode: False)  # not root's /var/run
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    default = configmod.default_socket_path()
    assert default == f"{shared}/scand/sophie"
    planted = plant(shared / "scand")
    with pytest.raises(UnsafeDirectory, match=r"server\.socket: .*scand is owned by uid 65534"):
        prepare_socket_path(default)
    untouched(planted)
    os.rmdir(planted)
    target = shared / "elsewhere"
    target.mkdir(mode=0o755)
    (shared / "scand").symlink_to(target)
    with pytest.raises(UnsafeDirectory, match="is a symlink"):
        prepare_socket_path(default, "milter.socket")
    assert os.listdir(target) == []
    os.unlink(shared / "scand")
    prepare_socket_path(default)  # made by scand now: 0755 (clients must reach the socket)
    st = os.lstat(shared / "scand")
    assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o755


@root_only
def test_milter_spool_dir_planted_or_symlinked_is_refused(shared: Path) -> None:
    planted = plant(shared / "spool")
    with pytest.raises(UnsafeDirectory, match=r"milter\.spool_dir: .*owned by uid 65534"):
        make_spool_dir(str(planted))
    untouched(planted)
    target = plant(shared / "target", 0o755)
    os.symlink(target, shared / "spool-link")
    with pytest.raises(UnsafeDirectory, match="is a symlink"):
        make_spool_dir(str(shared / "spool-link"))
    untouched(target, 0o755)  # the symlink's target was not chmod'ed (the old bug)
    own = shared / "own"
    assert make_spool_dir(str(own)) == (str(own), False)
    assert stat.S_IMODE(os.lstat(own).st_mode) == 0o700


@root_only
def test_clamav_default_tmp_planted_is_replaced_configured_is_refused(
        shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tmpdir, "default_parent", lambda config: str(shared))
    cfg = configmod.override(Config(), "engine", name="clamav")
    planted = plant(Path(tmpdir.base_dir(cfg)))
    base = tmpdir.make_base(cfg)
    assert base != str(planted) and base.startswith(f"{planted}-")
    assert stat.S_IMODE(os.lstat(base).st_mode) == 0o700
    worker = tmpdir.make_worker_dir(base)
    assert os.path.dirname(worker) == base
    untouched(planted)
    tmpdir.remove_base(cfg, base)
    assert not os.path.exists(base)
    configured = configmod.override(cfg, "clamav", tmp_dir=str(planted))
    with pytest.raises(UnsafeDirectory, match=r"clamav\.tmp_dir: "):
        tmpdir.make_base(configured)
    untouched(planted)


@root_only
def test_clamav_engine_starts_despite_a_planted_default(
        shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's exit 78: the engine itself loads, on a fresh directory."""
    pytest.importorskip("scand.engines.clamav.engine")
    from scand.engines.base import EngineError, load_engine

    monkeypatch.setattr(tmpdir, "default_parent", lambda config: str(shared))
    cfg = configmod.override(Config(), "engine", name="clamav")
    planted = plant(Path(tmpdir.base_dir(cfg)))
    try:
        engine = load_engine(cfg)
    except EngineError as exc:
        if "libclamav" in str(exc) and "tmp_dir" not in str(exc):
            pytest.skip(f"libclamav unavailable: {exc}")
        raise
    try:
        assert engine.info().signatures
    finally:
        engine.close()
    untouched(planted)
    assert [p for p in os.listdir(shared) if p.startswith(planted.name + "-")] == []


@root_only
def test_managed_clamd_run_dir_planted_or_symlinked_is_refused(
        shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "find_binary", lambda name: "/bin/true")
    monkeypatch.setattr(supervisor, "shm_tmp_dir", lambda config, run_dir: None)
    planted = plant(shared / "run")

    def managed(run_dir: Path) -> ManagedClamd:
        cfg = configmod.override(Config(), "engine", name="clamd", signatures=str(shared))
        return ManagedClamd(configmod.override(cfg, "clamd", run_dir=str(run_dir)))

    with pytest.raises(UnsafeDirectory, match=r"clamd\.run_dir: .*owned by uid 65534"):
        managed(planted).prepare(None)
    untouched(planted)
    target = plant(shared / "target", 0o755)
    os.symlink(target, shared / "run-link")
    with pytest.raises(UnsafeDirectory, match="is a symlink"):
        managed(shared / "run-link").prepare(None)
    untouched(target, 0o755)
    m = managed(shared / "ours")
    m.prepare(None)
    assert stat.S_IMODE(os.lstat(shared / "ours").st_mode) == 0o750
    assert stat.S_IMODE(os.lstat(shared / "ours" / "tmp").st_mode) == 0o700
