"""Path safety, inside the worker: which files a request may read, and how to open them.

Rules (PROTOCOL.md §2-3):

* only absolute paths; the real path (symlinks and ``..`` resolved) must lie
  under an allowed root when roots are configured;
* files are opened with ``O_NOFOLLOW | O_NONBLOCK`` and re-checked by
  (device, inode) after opening, so a symlink swapped in after the check
  cannot redirect the read, and a FIFO cannot block the worker; with roots,
  the opened descriptor's own path is checked against them again;
* anything that is not a regular file or a directory is refused;
* directories are walked recursively within ``[limits]`` (depth, files), and a
  symlink loop is walked once.

The checks run in the worker, not the daemon, so the trio process never
blocks on a slow disk and the checks happen in the process that opens the file.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator

from scand.config import LimitsConfig
from scand.events import Reason, Unchecked

# Flags for every file a worker opens on a client's behalf.
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def within_roots(real: str, roots: tuple[str, ...]) -> bool:
    """True when ``real`` is one of ``roots`` or below one. No roots = allow all."""
    if not roots:
        return True
    for root in roots:
        root = root.rstrip("/") or "/"
        if real == root or real.startswith(root if root == "/" else root + "/"):
            return True
    return False


def opened_path(fd: int) -> str:
    """Where an open descriptor really points (Linux /proc), whatever path opened it."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""  # no /proc: the (device, inode) check still holds


def os_unchecked(exc: OSError, path: str) -> Unchecked:
    """The reply for a failed stat/open/read."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return Unchecked(Reason.NOT_FOUND, path)
    if exc.errno == errno.ELOOP:
        return Unchecked(Reason.NOT_ALLOWED, f"{path}: symlink")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return Unchecked(Reason.UNREADABLE, path)
    return Unchecked(Reason.UNREADABLE, f"{path}: {exc.strerror}")


def open_checked(real: str, st: os.stat_result, roots: tuple[str, ...],
                 max_size: int) -> tuple[int, os.stat_result] | Unchecked:
    """Open one regular file checked by :func:`tree` or ``stat``: the descriptor and
    its fstat, or why not. The caller closes the descriptor."""
    if not stat.S_ISREG(st.st_mode):
        return Unchecked(Reason.NOT_ALLOWED, f"{real}: not a regular file")
    if st.st_size > max_size:
        return Unchecked(Reason.TOO_LARGE, f"{st.st_size}>{max_size}")
    try:
        fd = os.open(real, OPEN_FLAGS)
    except OSError as exc:
        return os_unchecked(exc, real)
    try:
        fst = os.fstat(fd)
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(
                fst.st_mode):
            failure = Unchecked(Reason.NOT_ALLOWED, f"{real}: changed while being checked")
        elif roots and not within_roots(opened_path(fd), roots):
            # A directory on the way was swapped for a symlink after the check.
            failure = Unchecked(Reason.NOT_ALLOWED, f"{real}: resolves outside allowed roots")
        else:
            return fd, fst
    except OSError as exc:
        failure = os_unchecked(exc, real)
    os.close(fd)
    return failure


def tree(top: str, roots: tuple[str, ...], limits: LimitsConfig
         ) -> Iterator[tuple[str, os.stat_result] | Unchecked]:
    """(real path, stat) for each file under ``top``, or an Unchecked finding.

    A depth or file-count limit is yielded last: the walk stops there."""
    seen_dirs: set[tuple[int, int]] = set()
    stack: list[tuple[str, int]] = [(top, 0)]
    files = 0
    while stack:
        directory, depth = stack.pop()
        if depth > limits.max_depth:
            yield Unchecked(Reason.TOO_DEEP, f"{directory}: depth>{limits.max_depth}")
            return
        try:
            st = os.stat(directory)
            names = sorted(os.listdir(directory), reverse=True)
        except OSError as exc:
            yield os_unchecked(exc, directory)
            continue
        if (st.st_dev, st.st_ino) in seen_dirs:
            continue  # a symlink loop back into the tree: already covered
        seen_dirs.add((st.st_dev, st.st_ino))
        for name in names:
            path = os.path.join(directory, name)
            real = os.path.realpath(path)
            if not within_roots(real, roots):
                yield Unchecked(Reason.NOT_ALLOWED, f"{path}: outside allowed roots")
                continue
            try:
                est = os.stat(real)
            except OSError as exc:
                yield os_unchecked(exc, path)
                continue
            if stat.S_ISDIR(est.st_mode):
                stack.append((real, depth + 1))
                continue
            files += 1
            if files > limits.max_files:
                yield Unchecked(Reason.TOO_MANY_FILES, f">{limits.max_files}")
                return
            yield real, est
