"""Directories scand writes in: made by scand, or checked and refused. Stdlib only.

Sockets, spool files and temp files (decoded mail parts) live in directories
that may sit in shared places (``/tmp``, ``/dev/shm``, a runtime directory).
Whoever owns such a directory can swap what scand put there: replace the
socket with a fake that answers ``OK``, or a spooled mail with a clean one
between the write and the scan. So every place that creates or reuses a
directory calls :func:`ensure_dir` (or :func:`private_or_fresh` for scand's
own default temp directories), and one rule decides:

* missing: scand creates it with ``mode`` (``0700``; ``0750`` where a group
  must enter), through a descriptor opened without following links, so the
  mode and owner are set on the directory made here and nothing else;
* existing: used only if it is a real directory (not a symlink: ``O_NOFOLLOW``),
  owned by scand's user (or root, or the user scand drops to), and writable by
  nobody else (group/world write bits clear; a root-owned sticky directory
  such as ``/tmp`` itself is fine: nobody can swap another user's entry in it);
  otherwise :class:`UnsafeDirectory`, naming the config key, the path and the fix.

A directory scand did not create is never chmod'ed or chown'ed (that would
hand a planted directory's owner a scand-shaped directory), and no symlink is
followed to change its target.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable

# Open a directory without following a symlink at the last component.
_OPEN_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeDirectory(OSError):
    """A directory scand would write in belongs to, or can be changed by, someone else."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unsafe directory"


def problem(st: os.stat_result, owners: Iterable[int]) -> str:
    """Why a directory with this (l)stat is not safe for scand, or "" if it is."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symlink"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid not in {0, *owners}:
        return f"is owned by uid {st.st_uid}, not by scand's user or root"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022 and not (mode & stat.S_ISVTX and st.st_uid == 0):
        return f"has mode {mode:04o}: others can write in it"
    return ""


def ensure_dir(path: str, key: str, *, mode: int = 0o700, owners: Iterable[int] = (),
               chown: tuple[int, int] | None = None) -> bool:
    """Create ``path`` (mode ``mode``, missing parents 0755) or check the existing one.

    ``owners``: uids besides scand's own (and root) that may own an existing
    directory (the user a root daemon drops to). ``chown``: (uid, gid) given to
    a directory created here. Returns True if it was created here. Raises
    :class:`UnsafeDirectory` (a message naming ``key``, the path and the fix).
    """
    allowed = {os.geteuid(), *owners}
    if chown is not None:
        allowed.add(chown[0])
    created = _mkdir(path, mode)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        try:  # why: a symlink (ELOOP, or ENOTDIR with O_DIRECTORY), a file, or else
            why = problem(os.lstat(path), allowed) or f"cannot be opened: {exc.strerror}"
        except OSError:
            why = f"cannot be opened: {exc.strerror}"
        raise _refuse(key, path, why) from None
    try:
        why = problem(os.fstat(fd), allowed)
        if why:
            raise _refuse(key, path, why)
        if created:  # ours: the umask may have narrowed the mode; set it exactly
            os.fchmod(fd, mode)
            if chown is not None:
                os.fchown(fd, *chown)
    finally:
        os.close(fd)
    return created


def private_or_fresh(path: str, key: str, *, mode: int = 0o700) -> tuple[str, str]:
    """``path`` made safe by :func:`ensure_dir`, or, if someone else holds it, a fresh
    private directory beside it (``mkdtemp``: a new random name, mode 0700, made here).

    For scand's own *default* temp directories only: a planted directory must not
    stop the engine from starting, and nothing needs to find the directory by name.
    Returns (the directory to use, why ``path`` was refused or "").
    """
    try:
        ensure_dir(path, key, mode=mode)
        return path, ""
    except UnsafeDirectory as exc:
        parent, name = os.path.split(path.rstrip("/"))
        fresh = tempfile.mkdtemp(prefix=f"{name}-", dir=parent or None)
        if mode != 0o700:
            os.chmod(fresh, mode)  # made here by mkdtemp: ours
        return fresh, str(exc)


def _mkdir(path: str, mode: int) -> bool:
    """Make the last component (parents 0755 when missing); False if it existed."""
    try:
        os.mkdir(path, mode)
        return True
    except FileExistsError:
        return False
    except FileNotFoundError:
        parent = os.path.dirname(path.rstrip("/"))
        if not parent or parent == path:
            raise
        os.makedirs(parent, mode=0o755, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)
        return True
    return False


def _refuse(key: str, path: str, why: str) -> UnsafeDirectory:
    return UnsafeDirectory(
        f"{key}: {path} {why}; scand uses only a directory it made, or one owned by its "
        f"user (or root) that nobody else can write in: remove {path}, or set {key} to "
        "such a directory")


__all__ = ["UnsafeDirectory", "ensure_dir", "private_or_fresh", "problem"]
