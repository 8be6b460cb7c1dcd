"""Where the clamav engine's workers keep libclamav's temporary files. Stdlib only.

Each worker gets ``<base>/worker-<pid>``: libclamav writes every decoded MIME
part there and extracts archive members there (up to MaxFileSize each), then
deletes them, so a mail of three parts is three creates, writes and unlinks.
On a disk filesystem that is journal work: over the bench corpus, ext4 cost
3.0 ms of CPU per message against 2.4 ms on tmpfs (the kernel share of a scan
fell from about a quarter to a tenth). So ``clamav.tmp_dir = ""`` picks
``/dev/shm`` when it is a tmpfs we can write and large enough, else
``$TMPDIR``. The files live only for the scan that wrote them.

A worker that exits normally removes its own directory; one that is killed
mid-scan cannot, so the engine reports it (``Engine.leftovers``, in the
worker's ``Ready``) and the pool removes it once the worker is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from typing import TYPE_CHECKING

from scand import safedir

if TYPE_CHECKING:
    from scand.config import Config

PREFIX = "worker-"


SHM = "/dev/shm"


def is_tmpfs(path: str, mounts: str = "/proc/self/mounts") -> bool:
    """True if ``path`` is itself the mount point of a tmpfs."""
    try:
        with open(mounts, encoding="utf-8", errors="replace") as fh:
            table = [line.split() for line in fh]
    except OSError:
        return False
    found = [f[2] for f in table if len(f) > 2 and f[1] == path]
    return bool(found) and found[-1] == "tmpfs"  # the last mount on a point is the visible one


# A tmpfs smaller than this is not used by default (a container's /dev/shm is often
# 64 MiB: one large attachment would fill it and every scan would fail).
MIN_SHM = 1 << 30


def shm_needed(config: Config) -> int:
    """How large /dev/shm must be to take the workers' temp files: room for each
    worker to hold two files of ``limits.max_file_size`` (a decoded part and a
    member inside it), and never less than :data:`MIN_SHM`."""
    return max(MIN_SHM, 2 * config.limits.max_file_size * config.worker_count)


def default_parent(config: Config) -> str:
    """``/dev/shm`` if it is a tmpfs we may write to and large enough
    (:func:`shm_needed`, against its total size, which does not change while we run,
    so the daemon and its workers always agree), else the system temp directory."""
    if is_tmpfs(SHM) and os.access(SHM, os.W_OK | os.X_OK):
        try:
            st = os.statvfs(SHM)
        except OSError:
            return tempfile.gettempdir()
        if st.f_blocks * st.f_frsize >= shm_needed(config):
            return SHM
    return tempfile.gettempdir()


def base_dir(config: Config, uid: int | None = None) -> str:
    """``clamav.tmp_dir``, or a directory per uid under :func:`default_parent` (the
    workers' uid: after a privilege drop the daemon may still be root when it asks)."""
    uid = os.getuid() if uid is None or uid < 0 else uid
    return config.clamav.tmp_dir or os.path.join(default_parent(config),
                                                 f"scand-clamav-{uid}")


def worker_dir(config: Config, pid: int, uid: int | None = None) -> str:
    """The temp directory of worker ``pid`` (named ``worker-<pid>``: the daemon removes
    it as one of the engine's leftovers, :meth:`scand.engines.base.Engine.leftovers`)."""
    return os.path.join(base_dir(config, uid), f"{PREFIX}{pid}")


def make_base(config: Config) -> str:
    """The base directory, scand's own (:mod:`scand.safedir`), with the directories of
    dead workers removed. A configured ``clamav.tmp_dir`` that someone else holds is
    refused (UnsafeDirectory); the default one is replaced by a fresh private
    directory beside it (a planted ``/dev/shm/scand-clamav-<uid>`` must not stop the
    engine), which :func:`remove_base` removes when the engine is freed."""
    base = base_dir(config)
    if config.clamav.tmp_dir:
        safedir.ensure_dir(base, "clamav.tmp_dir")
    else:
        base, why = safedir.private_or_fresh(base, "clamav.tmp_dir")
        if why:  # (the zygote's log stream: one JSON line on stderr)
            print(json.dumps({"event": "clamav_tmp_replaced", "pid": os.getpid(),
                              "using": base, "error": why}), file=sys.stderr, flush=True)
    for name in os.listdir(base):
        pid = name.removeprefix(PREFIX)
        if name.startswith(PREFIX) and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    return base


def remove_base(config: Config, base: str) -> None:
    """Remove a fresh base made by :func:`make_base` in place of a refused default."""
    if base and base != base_dir(config):
        shutil.rmtree(base, ignore_errors=True)


def make_worker_dir(base: str) -> str:
    """This worker's directory under ``base`` (the zygote's :func:`make_base`)."""
    path = os.path.join(base, f"{PREFIX}{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)  # a dead namesake's leftovers
    os.mkdir(path, 0o700)
    return path


def remove_worker_dir(path: str) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)
