"""The managed clamd's run directory holds only the live clamd's files: what a killed
daemon left is removed at start, and a replaced clamd (restarted after it died, or
switched by RELOAD) takes its socket, configuration and log with it. Nothing scand did
not name is touched."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.conftest import DaemonFactory
from tests.e2e.test_clamd import managed_pid, sigdir  # noqa: F401 (fixture)

KEEP = ["notes.txt", "clamd-x.conf", "clamd-1.conf.bak", "my-clamd.sock"]


def live_only(run: Path, generation: int) -> set[str]:
    return {f"clamd-{generation}.sock", f"clamd-{generation}.conf", f"clamd-{generation}.log",
            "clamd.sock", "tmp", *KEEP}


def wait_for(check: object, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_run_dir_holds_only_the_live_clamd(scand_daemon: DaemonFactory, sigdir: Path,  # noqa: F811
                                           short_tmp: Path) -> None:
    run = short_tmp / "run"
    run.mkdir()
    for stale in ("clamd-7.conf", "clamd-7.sock", "clamd-7.log", "clamd-12.conf",
                  "clamd.sock.new"):
        (run / stale).write_text("left by a killed daemon\n")
    for keep in KEEP:
        (run / keep).write_text("not scand's\n")
    d = scand_daemon("--engine", "clamd", "--signatures", str(sigdir),
                     config=f'[clamd]\nrun_dir = "{run}"\n')

    def generation() -> int:
        gen = d.stats()["clamd"]["generation"]  # type: ignore[index]
        assert isinstance(gen, int)
        return gen

    assert set(os.listdir(run)) == live_only(run, generation())
    assert "clamd_run_dir_swept" in d.log()

    first = managed_pid(d)
    os.kill(first, signal.SIGKILL)  # replaced after it died
    wait_for(lambda: d.stats()["clamd"]["pid"] not in (None, first)  # type: ignore[index]
             and generation() == 2)
    assert set(os.listdir(run)) == live_only(run, 2)

    assert d.ask(b"RELOAD\n") == b"RELOADING\n"  # switched: a fresh clamd, the old drained
    wait_for(lambda: generation() == 3)
    wait_for(lambda: set(os.listdir(run)) == live_only(run, 3))
    assert d.ask(b"PING\n") == b"PONG\n"


def test_a_clamd_left_running_by_a_killed_daemon_is_stopped_at_start(
        scand_daemon: DaemonFactory, sigdir: Path, short_tmp: Path) -> None:  # noqa: F811
    """SIGKILL (the OOM killer) gives the daemon no chance to stop its clamd: re-parented
    to init, it kept its signature set in memory, and the next start added a second
    clamd beside it. The next start now stops it (by pid) before starting its own."""
    run = short_tmp / "run"
    config = f'[clamd]\nrun_dir = "{run}"\n'
    first = scand_daemon("--engine", "clamd", "--signatures", str(sigdir), config=config)
    orphan = managed_pid(first)
    try:
        first.proc.kill()  # no SIGTERM handler runs: the clamd outlives it
        first.proc.wait()
        time.sleep(0.5)
        assert psutil.pid_exists(orphan) and psutil.Process(orphan).status() != "zombie"
        second = scand_daemon("--engine", "clamd", "--signatures", str(sigdir),
                              config=config)
        wait_for(lambda: not psutil.pid_exists(orphan)
                 or psutil.Process(orphan).status() == "zombie", limit=15)
        assert managed_pid(second) != orphan
        assert "clamd_orphans_stopped" in second.log() and str(orphan) in second.log()
        assert second.ask(b"PING\n") == b"PONG\n"
        (sigdir.parent / "clean.txt").write_text("nothing here\n")
        assert second.ask(f"{sigdir.parent / 'clean.txt'}\n".encode()) == b"0\n"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(orphan, signal.SIGKILL)  # the test's own leftover, by pid


def test_only_a_configuration_of_this_run_dir_makes_a_process_ours(tmp_path: Path) -> None:
    """A command line naming ``clamd-<n>.conf`` in this run directory (also through a
    symlink: /var/run -> /run) is ours; one in another directory, a name scand never
    gives, or another program, is not."""
    from scand.clamd.rundir import orphans

    mine, other = tmp_path / "run", tmp_path / "run2"
    mine.mkdir()
    other.mkdir()
    (tmp_path / "link").symlink_to(mine)
    procs = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                               f"--config-file={d}/{name}"])
             for d, name in ((other, "clamd-1.conf"), (mine, "clamd-x.conf"),
                             (mine, "clamd-3.conf"), (tmp_path / "link", "clamd-4.conf"))]
    try:
        wait_for(lambda: all(psutil.Process(p.pid).cmdline()[-1].startswith("--config")
                             for p in procs))
        assert sorted(p.pid for p in orphans(mine, sys.executable)) == sorted(
            [procs[2].pid, procs[3].pid])
        assert [p.pid for p in orphans(other, sys.executable)] == [procs[0].pid]
        assert orphans(mine) == []  # not a clamd
    finally:
        for p in procs:
            p.kill()
            p.wait()
