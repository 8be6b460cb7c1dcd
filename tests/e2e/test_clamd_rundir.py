"""The managed clamd's run directory holds only the live clamd's files: what a killed
daemon left is removed at start, and a replaced clamd (restarted after it died, or
switched by RELOAD) takes its socket, configuration and log with it. Nothing scand did
not name is touched."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

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
