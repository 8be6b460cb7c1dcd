"""What a killed daemon left of its managed clamd, found and removed at the next start.

A daemon stopped by SIGKILL (the OOM killer, a ``kill -9``) cannot stop its
clamd: the clamd is re-parented to init and keeps its signature set in memory
(hundreds of MiB with a full database) and its socket in the run directory. The
next start must not add a second one beside it:

* :func:`stop_orphans`: a clamd of this user whose command line names a
  configuration file in this run directory (``--config-file=<run_dir>/clamd-<n>.conf``,
  a name only scand gives, in a directory only scand's user may write) is one of
  ours that outlived its daemon: it gets SIGTERM, then SIGKILL after a grace
  period, always by pid;
* :func:`sweep_run_dir`: then the files such a clamd used are removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from pathlib import Path

import psutil

GENERATION_FILES = (".sock", ".conf", ".log")
_GENERATION_NAME = re.compile(r"clamd-\d+\.(sock|conf|log)")
_CONF_NAME = re.compile(r"clamd-\d+\.conf")


def orphans(run_dir: Path, binary: str = "clamd") -> list[psutil.Process]:
    """Live ``binary`` processes of this user (any, for root) started on a
    configuration file of this run directory (the path compared resolved: the run
    directory may be named through a symlink, /var/run -> /run)."""
    here = os.path.realpath(run_dir)
    me = os.getuid()
    found = []
    for proc in psutil.process_iter(["cmdline", "uids"]):
        cmdline = proc.info.get("cmdline") or []
        uids = proc.info.get("uids")
        if not cmdline or os.path.basename(cmdline[0]) != os.path.basename(binary):
            continue
        if me != 0 and (uids is None or uids.real != me):
            continue
        for arg in cmdline[1:]:
            path = arg.removeprefix("--config-file=")
            if (path != arg and _CONF_NAME.fullmatch(os.path.basename(path))
                    and os.path.realpath(os.path.dirname(path)) == here):
                found.append(proc)
                break
    return found


def stop_orphans(run_dir: Path, grace: float, binary: str = "clamd") -> list[int]:
    """Stop every clamd :func:`orphans` finds: SIGTERM, SIGKILL after ``grace``
    seconds; the pids signalled. Called before the first clamd starts."""
    found = orphans(run_dir, binary)
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(found, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=grace)
    return sorted(p.pid for p in found)


def sweep_run_dir(run_dir: Path) -> list[str]:
    """Remove what a killed daemon left in the run directory: ``clamd-<n>.sock``,
    ``.conf`` and ``.log``, and the half-made link ``clamd.sock.new``. Called before
    the first clamd starts (after :func:`stop_orphans`); nothing else in the
    directory is touched."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(run_dir))
    except OSError:
        return removed
    for entry in entries:
        if not (_GENERATION_NAME.fullmatch(entry.name) or entry.name == "clamd.sock.new"):
            continue
        if entry.is_dir(follow_symlinks=False):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(entry.name)
    return sorted(removed)
