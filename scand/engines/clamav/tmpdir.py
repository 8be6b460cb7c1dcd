"""Where the clamav engine's workers keep libclamav's temporary files. Stdlib only.

Each worker gets ``<base>/worker-<pid>``: libclamav extracts archive members
there (up to MaxFileSize each). A worker that exits normally removes its own
directory; one that is killed mid-scan cannot, so the pool removes it once the
worker is gone (:func:`remove_worker_dir`, called by the daemon).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scand.config import Config

PREFIX = "worker-"


def base_dir(config: Config, uid: int | None = None) -> str:
    """``clamav.tmp_dir``, or a directory per uid (the workers' uid: after a
    privilege drop the daemon may still be root when it asks)."""
    uid = os.getuid() if uid is None or uid < 0 else uid
    return config.clamav.tmp_dir or os.path.join(tempfile.gettempdir(), f"scand-clamav-{uid}")


def worker_dir(config: Config, pid: int, uid: int | None = None) -> str:
    """The temp directory of worker ``pid`` ("" for engines that keep none)."""
    if config.engine.name != "clamav":
        return ""
    return os.path.join(base_dir(config, uid), f"{PREFIX}{pid}")


def make_base(config: Config) -> str:
    """Create the base directory (mode 0700, ours) and drop dirs of dead workers."""
    base = base_dir(config)
    os.makedirs(base, mode=0o700, exist_ok=True)
    st = os.lstat(base)
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise OSError(f"{base}: must be a directory owned by uid {os.getuid()}, mode 0700")
    for name in os.listdir(base):
        pid = name.removeprefix(PREFIX)
        if name.startswith(PREFIX) and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)
    return base


def make_worker_dir(config: Config) -> str:
    path = worker_dir(config, os.getpid())
    shutil.rmtree(path, ignore_errors=True)  # a dead namesake's leftovers
    os.mkdir(path, 0o700)
    return path


def remove_worker_dir(path: str) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)
