"""The worker child answers on its pipe (run stand-alone here; the import rules of a
forked worker are tests/unit/test_import_rules.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from scand.config import Config
from scand.events import Infected
from scand.worker.child import read_message, write_message
from scand.worker.wire import Done, Job, Ready
from tests.conftest import EICAR, ROOT


def test_child_round_trip() -> None:
    """Spawn a real worker: it loads the engine, reports ready, scans, exits on EOF."""
    proc = subprocess.Popen([sys.executable, "-m", "scand.worker.child"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdin is not None and proc.stdout is not None
    try:
        write_message(proc.stdin.fileno(), Config())
        ready = read_message(proc.stdout.fileno())
        assert isinstance(ready, Ready) and not ready.error
        assert ready.pid == proc.pid and ready.rss > 0
        assert ready.modules == ()  # nothing daemon-side, engine included
        write_message(proc.stdin.fileno(), Job(7, data=EICAR))
        done = read_message(proc.stdout.fileno())
        assert isinstance(done, Done) and done.id == 7
        assert done.outcome.verdict == Infected("Eicar-Test-Signature")
        proc.stdin.close()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
