"""Scan processes run under SCHED_BATCH (``pool.batch_scheduling``): a worker (or the
managed clamd's threads) woken by a job does not preempt the daemon."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from tests.conftest import Daemon, DaemonFactory
from tests.e2e.test_clamd import managed_pid, sigdir  # noqa: F401 (fixture)


def _workers(d: Daemon) -> list[int]:
    pids = [w["pid"] for w in d.stats()["pool"]["workers"]]
    assert pids
    return pids


@pytest.mark.parametrize("batch", [True, False])
def test_workers_run_batch_and_the_daemon_does_not(scand_daemon: DaemonFactory,
                                                   batch: bool) -> None:
    d = scand_daemon(config=f"[pool]\nbatch_scheduling = {str(batch).lower()}\n")
    want = os.SCHED_BATCH if batch else os.SCHED_OTHER
    assert {os.sched_getscheduler(pid) for pid in _workers(d)} == {want}
    assert os.sched_getscheduler(d.proc.pid) == os.SCHED_OTHER  # the daemon answers first
    assert d.ask(b"PING\n") == b"PONG\n"


def test_the_managed_clamd_and_its_threads_run_batch(scand_daemon: DaemonFactory,
                                                     sigdir: Path) -> None:  # noqa: F811
    d = scand_daemon("--engine", "clamd", "--signatures", str(sigdir))
    pid = managed_pid(d)
    threads = [t.id for t in psutil.Process(pid).threads()]
    assert len(threads) > 1  # clamd's threads were started after the policy was set
    assert {os.sched_getscheduler(tid) for tid in threads} == {os.SCHED_BATCH}
