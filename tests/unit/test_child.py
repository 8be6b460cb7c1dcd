"""The worker child is a plain process: no trio, and it answers on its pipe."""

from __future__ import annotations

import os
import subprocess
import sys

from scand.config import Config
from scand.events import Infected
from scand.pool.child import read_message, write_message
from scand.pool.wire import Done, Job, Ready
from tests.conftest import EICAR, ROOT


def test_child_imports_no_trio() -> None:
    code = "import sys, scand.pool.child; print(sorted(m for m in sys.modules if 'trio' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"


def test_child_round_trip() -> None:
    """Spawn a real worker: it loads the engine, reports ready, scans, exits on EOF."""
    proc = subprocess.Popen([sys.executable, "-m", "scand.pool.child"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdin is not None and proc.stdout is not None
    try:
        write_message(proc.stdin.fileno(), Config())
        ready = read_message(proc.stdout.fileno())
        assert isinstance(ready, Ready) and not ready.error
        assert ready.pid == proc.pid and ready.rss > 0
        assert "trio" not in ready.modules  # what the worker really loaded, engine included
        write_message(proc.stdin.fileno(), Job(7, data=EICAR))
        done = read_message(proc.stdout.fileno())
        assert isinstance(done, Done) and done.id == 7
        assert done.verdict == Infected("Eicar-Test-Signature")
        proc.stdin.close()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
