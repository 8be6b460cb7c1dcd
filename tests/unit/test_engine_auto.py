"""``engine.name = "auto"``: ClamAV's database when libclamav loads and one is there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from scand import config as configmod
from scand.config import Config
from scand.engines import auto
from scand.engines.base import load_engine
from tests.conftest import ROOT

NDB = "Scand-Auto-Test:0:*:73636" + "16e642d6175746f2d74657374\n"


def test_auto_is_the_default() -> None:
    assert Config().engine.name == "auto"
    assert configmod.from_mapping({"engine": {"name": "auto"}}).engine.name == "auto"


def test_database_files(tmp_path: Path) -> None:
    for name, text in (("main.cvd", "x"), ("daily.CLD", "x"), ("mine.ndb", NDB),
                       ("empty.hdb", ""), ("freshclam.dat", "x"), ("local.ign2", "x"),
                       ("notes.txt", "x")):
        (tmp_path / name).write_text(text)
    (tmp_path / "sub.ldb").mkdir()
    assert auto.database_files(str(tmp_path)) == ["daily.CLD", "main.cvd", "mine.ndb"]
    assert auto.database_files(str(tmp_path / "missing")) == []


def test_no_database_means_builtin(tmp_path: Path) -> None:
    choice = auto.choose("auto", "", default_dir=str(tmp_path))
    assert choice == auto.Choice("builtin", "", f"auto: builtin (no database in {tmp_path})")
    choice = auto.choose("auto", str(tmp_path / "gone"))
    assert choice.name == "builtin" and choice.signatures == str(tmp_path / "gone")


def test_a_database_and_libclamav_mean_clamav(tmp_path: Path) -> None:
    (tmp_path / "a.ndb").write_text(NDB)
    (tmp_path / "b.hdb").write_text("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Hash\n")
    version, why = auto.libclamav_version()
    assert version.startswith("1."), why
    choice = auto.choose("auto", "", default_dir=str(tmp_path))
    assert choice == auto.Choice(
        "clamav", str(tmp_path), f"auto: clamav (libclamav {version}, {tmp_path}: 2 files)")
    # The resolved config loads the clamav engine on that directory (2 signatures).
    cfg, reason = auto.resolve(configmod.override(Config(), "engine", signatures=str(tmp_path)))
    assert (cfg.engine.name, cfg.engine.signatures) == ("clamav", str(tmp_path))
    assert reason == choice.reason
    engine = load_engine(configmod.override(Config(), "engine", signatures=str(tmp_path)))
    try:
        assert engine.info().name.startswith("clamav/")
        assert engine.info().signatures == "sigs=2"
    finally:
        engine.close()


def test_libclamav_that_does_not_load_means_builtin(tmp_path: Path) -> None:
    (tmp_path / "a.ndb").write_text(NDB)
    choice = auto.choose("auto", str(tmp_path), "/nonexistent/libclamav.so.12")
    assert (choice.name, choice.signatures) == ("builtin", str(tmp_path))
    assert choice.reason.startswith("auto: builtin (libclamav did not load: libclamav not found")
    assert "install libclamav12" in choice.reason


def test_the_probe_does_not_load_libclamav_here() -> None:
    """The daemon asks a child interpreter; it never maps the library itself."""
    code = ("from scand.engines import auto; import sys; v, _ = auto.libclamav_version(); "
            "maps = open('/proc/self/maps').read(); print(v, 'libclamav' in maps)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    version, loaded = out.stdout.split()
    assert version.startswith("1.") and loaded == "False"


def test_clamav_and_clamd_default_to_the_database_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for name in ("clamav", "clamd"):
        assert auto.choose(name, "", default_dir=str(empty)) == auto.Choice(name, "", "")
        assert auto.choose(name, "/x") == auto.Choice(name, "/x", "")
    (tmp_path / "daily.cvd").write_text("x")
    assert auto.choose("clamd", "", default_dir=str(tmp_path)) == auto.Choice(
        "clamd", str(tmp_path), f"clamd: {tmp_path}: 1 files")
    assert auto.choose("builtin", "", default_dir=str(tmp_path)) == auto.Choice("builtin", "", "")


def test_the_choice_is_made_once_and_held_across_reloads(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.mkdir()
    resolve = auto.Resolver()
    start = configmod.override(Config(), "engine", signatures=str(db))
    assert resolve(start).engine.name == "builtin"
    assert resolve.reason == f"auto: builtin (no database in {db})"
    (db / "a.ndb").write_text(NDB)  # a database appears: a reload keeps builtin
    assert resolve(start).engine.name == "builtin"
    assert resolve.reason == f"auto: builtin (no database in {db})"
    # A reloaded config that names an engine gets it (and no auto reason).
    named = configmod.override(start, "engine", name="chaos")
    assert resolve(named).engine.name == "chaos" and resolve.reason == ""
    other = auto.Resolver()
    assert other(start).engine.name == "clamav" and other.reason.startswith("auto: clamav")
