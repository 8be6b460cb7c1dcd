"""The daemon with ``engine.name = "auto"``: the ready line and VERSION say which and why."""

from __future__ import annotations

import json
from pathlib import Path

import scand
from scand.engines import auto
from tests.conftest import DaemonFactory

NDB = "Scand-Auto-Test:0:*:" + b"scand-auto-test".hex() + "\n"


def ready_line(log: str) -> dict[str, object]:
    for line in log.splitlines():
        if '"ready"' in line:
            entry: dict[str, object] = json.loads(line)
            return entry
    raise AssertionError(f"no ready line in:\n{log}")


def config(sigdir: Path | None, extra: str = "") -> str:
    sigs = f'signatures = "{sigdir}"\n' if sigdir is not None else ""
    return f'[engine]\nname = "auto"\n{sigs}self_check = 0\n{extra}'


def test_auto_with_a_database_runs_libclamav(scand_daemon: DaemonFactory, tmp_path: Path) -> None:
    (tmp_path / "local.ndb").write_text(NDB)
    target = tmp_path / "sample.txt"
    target.write_bytes(b"xx scand-auto-test xx")
    d = scand_daemon(config=config(tmp_path))
    version, _ = auto.libclamav_version()
    why = f"auto: clamav (libclamav {version}, {tmp_path}: 1 files)"
    assert d.ask(b"VERSION\n").decode() == \
        f"scand {scand.__version__} clamav/{version} sigs=1 ({why})\n"
    assert d.ask(f"{target}\n".encode()) == b"1:Scand-Auto-Test.UNOFFICIAL\n"  # libclamav's
    assert ready_line(d.log())["engine"] == why
    stats = d.stats()
    assert stats["engine"]["reason"] == why  # type: ignore[index]


def test_auto_without_a_database_runs_builtin(scand_daemon: DaemonFactory,
                                              tmp_path: Path) -> None:
    d = scand_daemon(config=config(tmp_path))
    why = f"auto: builtin (no database in {tmp_path})"
    assert d.ask(b"VERSION\n").decode() == f"scand {scand.__version__} builtin sigs=1 ({why})\n"
    assert ready_line(d.log())["engine"] == why


def test_auto_without_libclamav_runs_builtin(scand_daemon: DaemonFactory,
                                            tmp_path: Path) -> None:
    (tmp_path / "local.ndb").write_text(NDB)
    target = tmp_path / "sample.txt"
    target.write_bytes(b"xx scand-auto-test xx")
    d = scand_daemon(config=config(tmp_path, '[clamav]\nlibrary = "/nonexistent/libclamav.so"\n'))
    reply = d.ask(b"VERSION\n").decode()
    assert reply.startswith(f"scand {scand.__version__} builtin sigs=2 (auto: builtin "
                            "(libclamav did not load: libclamav not found"), reply
    # The built-in engine reads the same .ndb.
    assert d.ask(f"{target}\n".encode()) == b"1:Scand-Auto-Test\n"


def test_auto_default_directory_is_clamavs(scand_daemon: DaemonFactory) -> None:
    """No signatures: /var/lib/clamav decides, whatever this host holds there."""
    d = scand_daemon(config=config(None))
    files = auto.database_files(auto.CLAMAV_DATABASE_DIR)
    reason = str(ready_line(d.log())["engine"])
    if files:
        assert reason.startswith("auto: clamav (libclamav ")
        assert reason.endswith(f"{auto.CLAMAV_DATABASE_DIR}: {len(files)} files)")
    else:
        assert reason == f"auto: builtin (no database in {auto.CLAMAV_DATABASE_DIR})"
    assert d.ask(b"VERSION\n").decode().endswith(f" ({reason})\n")
