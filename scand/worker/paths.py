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
from dataclasses import dataclass

from scand.config import LimitsConfig
from scand.events import Reason, Unchecked

# Flags for every file a worker opens on a client's behalf.
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# Resolving a client's path: O_PATH opens nothing for reading (a FIFO cannot block),
# and the kernel follows the links (at most 40, then ELOOP) in one step.
RESOLVE_FLAGS = os.O_PATH | os.O_CLOEXEC
# Linux's MAXSYMLINKS: a longer chain is a loop or an attack, never a real layout.
MAX_LINKS = 40


@dataclass(frozen=True, slots=True)
class Resolved:
    """A client's path as the kernel resolved it: where it really is, and what."""

    real: str
    st: os.stat_result


def allowed_roots(configured: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The roots to check against: each as configured (for the lexical check of a
    client's path) and resolved (for the real one)."""
    roots: dict[str, None] = {}
    for root in configured:
        roots[os.path.normpath(root)] = None
        roots[real_path(root) or os.path.normpath(root)] = None
    return tuple(roots)


def real_path(path: str) -> str | None:
    """``os.path.realpath`` that never raises: iterative (a 1,500-link chain cannot
    exhaust the stack), at most :data:`MAX_LINKS` links, missing components kept as
    written. ``None`` for a relative path, a NUL, a loop, or an error other than
    a missing component."""
    if not path.startswith("/") or "\0" in path:
        return None
    pending = [name for name in reversed(path.split("/")) if name]
    resolved, links, missing = "", 0, False
    while pending:
        name = pending.pop()
        if name in (".", ""):
            continue
        if name == "..":
            resolved = resolved.rpartition("/")[0]
            continue
        candidate = f"{resolved}/{name}"
        if missing:
            resolved = candidate
            continue
        try:
            st = os.lstat(candidate)
            if not stat.S_ISLNK(st.st_mode):
                resolved = candidate
                continue
            links += 1
            target = os.readlink(candidate) if links <= MAX_LINKS else ""
        except (FileNotFoundError, NotADirectoryError):
            missing, resolved = True, candidate
            continue
        except (OSError, ValueError):
            return None
        if not target:
            return None
        if target.startswith("/"):
            resolved = ""
        pending.extend(n for n in reversed(target.split("/")) if n)
    return resolved or "/"


def check_name(path: str) -> Unchecked | None:
    """What no file system call may see: a relative path, a NUL, a name the file
    system encoding cannot carry."""
    if not path.startswith("/"):
        return Unchecked(Reason.PROTOCOL, "relative path")
    if "\0" in path:
        return Unchecked(Reason.PROTOCOL, "NUL in path")
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        return Unchecked(Reason.PROTOCOL, "undecodable path")
    return None


def resolve(path: str, roots: tuple[str, ...]) -> Resolved | Unchecked:
    """Where a client's absolute path leads, or why it cannot be scanned. Never raises.

    Outside the roots, every path gets the same answer, ``not-allowed <path>``,
    whether it exists or not: the lexical path is checked before the file system
    is asked anything, and when the kernel's resolution fails, the path resolved
    as far as it exists is checked before the error is named.
    """
    refused = check_name(path)
    if refused is not None:
        return refused
    outside = Unchecked(Reason.NOT_ALLOWED, path)
    if not within_roots(os.path.normpath(path), roots):
        return outside
    try:
        fd = os.open(path, RESOLVE_FLAGS)
    except (OSError, ValueError) as exc:
        if roots and not within_roots(real_path(path) or "", roots):
            return outside
        if isinstance(exc, OSError):
            return os_unchecked(exc, path)
        return Unchecked(Reason.PROTOCOL, "bad path")  # pragma: no cover - check_name
    try:
        st = os.fstat(fd)
        real = opened_path(fd) or real_path(path) or ""
    except OSError as exc:
        return os_unchecked(exc, path)
    finally:
        os.close(fd)
    if not real or not within_roots(real, roots):
        return outside
    return Resolved(real, st)


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
            found = resolve(path, roots)
            if isinstance(found, Unchecked):
                yield found
                continue
            real, est = found.real, found.st
            if stat.S_ISDIR(est.st_mode):
                stack.append((real, depth + 1))
                continue
            files += 1
            if files > limits.max_files:
                yield Unchecked(Reason.TOO_MANY_FILES, f">{limits.max_files}")
                return
            yield real, est
