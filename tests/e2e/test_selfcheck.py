"""Signature updates without a cron job, with the real daemon and real ClamAV tools.

* freshclam's ``NotifyClamd`` path: ``clamdscan --reload`` over the clamd front;
* self-check: a signature dropped into the directory is picked up, a broken one
  keeps the old set (logged once, not retried), a half-written one waits.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Daemon, DaemonFactory

CLAMDSCAN = shutil.which("clamdscan")


def ndb(name: str, text: str) -> str:
    return f"{name}:0:*:{text.encode().hex()}\n"


def wait_until(what: Callable[[], bool], daemon: Daemon, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if what():
            return
        time.sleep(0.1)
    raise AssertionError(f"not in {limit}s; log:\n{daemon.log()}")


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    sigs, files = tmp_path / "sigs", tmp_path / "files"
    sigs.mkdir()
    files.mkdir()
    (sigs / "a.ndb").write_text(ndb("Scand-Test-A", "scand-sig-a"))
    (files / "a.txt").write_text("xx scand-sig-a xx\n")
    (files / "b.txt").write_text("xx scand-sig-b xx\n")
    (files / "c.txt").write_text("xx scand-sig-c xx\n")
    return sigs, files


def start(scand_daemon: DaemonFactory, sigs: Path, self_check: float, settle: float,
          *args: str) -> Daemon:
    return scand_daemon("--engine", "clamav", "--signatures", str(sigs), *args, config=(
        f"[engine]\nself_check = {self_check}\nself_check_settle = {settle}\n"))


def verdict(daemon: Daemon, path: Path) -> str:
    return daemon.ask(f"{path}\n".encode()).decode().strip()


@pytest.mark.skipif(CLAMDSCAN is None, reason="clamdscan not installed (./scripts/test)")
def test_clamdscan_reload_over_the_clamd_front(scand_daemon: DaemonFactory,
                                               setup: tuple[Path, Path]) -> None:
    """What freshclam's NotifyClamd does: RELOAD on the clamd socket."""
    sigs, files = setup
    front = sigs.parent / "clamd.sock"
    d = start(scand_daemon, sigs, 0, 0, "--clamd-socket", str(front))
    assert CLAMDSCAN is not None
    conf = sigs.parent / "clamd.conf"
    conf.write_text(f"LocalSocket {front}\n")

    def clamdscan(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLAMDSCAN, f"--config-file={conf}", "--no-summary", *args],
                              capture_output=True, text=True, timeout=60, check=False)

    done = clamdscan(str(files / "b.txt"))
    assert (done.returncode, done.stdout) == (0, f"{files}/b.txt: OK\n"), done
    (sigs / "b.ndb").write_text(ndb("Scand-Test-B", "scand-sig-b"))
    done = clamdscan("--reload")
    assert done.returncode == 0, done
    wait_until(lambda: clamdscan(str(files / "b.txt")).returncode == 1, d)
    done = clamdscan(str(files / "b.txt"))
    assert done.stdout == f"{files}/b.txt: Scand-Test-B.UNOFFICIAL FOUND\n", done
    assert "self_check_on" not in d.log()  # self_check = 0: off


def test_self_check_picks_up_a_dropped_file(scand_daemon: DaemonFactory,
                                           setup: tuple[Path, Path]) -> None:
    sigs, files = setup
    d = start(scand_daemon, sigs, 0.5, 1)
    assert verdict(d, files / "a.txt") == "1:Scand-Test-A.UNOFFICIAL"
    assert verdict(d, files / "b.txt") == "0"
    dropped = time.monotonic()
    (sigs / "b.ndb").write_text(ndb("Scand-Test-B", "scand-sig-b"))
    wait_until(lambda: verdict(d, files / "b.txt") == "1:Scand-Test-B.UNOFFICIAL", d)
    took = time.monotonic() - dropped
    print(f"self-check picked the file up in {took:.2f} s")
    assert 1.0 <= took < 15, took  # no sooner than the settle time
    assert verdict(d, files / "a.txt") == "1:Scand-Test-A.UNOFFICIAL"
    wait_until(lambda: '"reload_done"' in d.log(), d)  # once every worker rolled over
    time.sleep(1)  # two more checks: nothing more to load
    log = d.log()
    assert log.count('"self_check_reload"') == 1 and log.count('"reload_done"') == 1


def test_a_broken_file_keeps_the_old_set_and_is_logged_once(scand_daemon: DaemonFactory,
                                                           setup: tuple[Path, Path]) -> None:
    sigs, files = setup
    d = start(scand_daemon, sigs, 0.5, 0.5)
    (sigs / "b.ndb").write_text(ndb("Scand-Test-B", "scand-sig-b") + "Broken:0:*:zz!\n")
    wait_until(lambda: '"self_check_kept"' in d.log(), d)
    time.sleep(3)  # six more checks: not tried again
    log = d.log()
    assert log.count('"reload_failed"') == 1 and log.count('"self_check_kept"') == 1, log
    failed = next(line for line in log.splitlines() if '"reload_failed"' in line)
    assert "b.ndb" in failed, failed  # names the file
    assert verdict(d, files / "a.txt") == "1:Scand-Test-A.UNOFFICIAL"  # the old set serves
    assert verdict(d, files / "b.txt") == "0"
    check = d.stats()["self_check"]
    assert check["kept_broken"] is True and check["last"] == "kept", check  # type: ignore[index]
    # Fixed: the next change is loaded.
    (sigs / "b.ndb").write_text(ndb("Scand-Test-B", "scand-sig-b"))
    wait_until(lambda: verdict(d, files / "b.txt") == "1:Scand-Test-B.UNOFFICIAL", d)
    # The reload returns once every worker rolled over (the first may answer sooner).
    wait_until(lambda: d.stats()["self_check"]["last"] == "done", d)  # type: ignore[index]
    assert d.log().count('"reload_failed"') == 1
    check = d.stats()["self_check"]
    assert check["kept_broken"] is False and check["reloads"] == 2, check  # type: ignore[index]


def test_a_half_written_file_is_loaded_once_complete(scand_daemon: DaemonFactory,
                                                     setup: tuple[Path, Path]) -> None:
    sigs, files = setup
    d = start(scand_daemon, sigs, 0.5, 3)
    line = ndb("Scand-Test-C", "scand-sig-c")
    path = sigs / "c.ndb"
    with open(path, "w") as fh:  # a copy caught halfway: a line cut in its hex
        fh.write(line[: len(line) // 2 + 1])
        fh.flush()
        wait_until(lambda: '"self_check_changed"' in d.log(), d)
        fh.write(line[len(line) // 2 + 1:])
    wait_until(lambda: verdict(d, files / "c.txt") == "1:Scand-Test-C.UNOFFICIAL", d)
    log = d.log()
    assert '"reload_failed"' not in log, log
    assert log.count('"self_check_reload"') == 1
