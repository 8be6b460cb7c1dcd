"""List the files a clamd path command covers, the way clamd walks them.

clamd reports per file (``<file>: <Name> FOUND``), so the clamd front walks
the tree itself and gives the pool one job per file; the worker re-checks
every file (allowed roots, ``O_NOFOLLOW``, device and inode) when it opens it.
This runs in a thread (``trio.to_thread``), never on the event loop.

Order is clamd's: depth first, entries in directory (readdir) order, a
subdirectory walked when it is met. Unlike clamd (which skips symlinks by
default and answers OK without having read them), a symlink is followed when
its target lies under the allowed roots, and reported as not allowed otherwise:
nothing in the tree is silently left out. Limits are scand's
``limits.max_files`` and ``limits.max_depth``; hitting one is an error line.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from scand.events import Reason, Unchecked
from scand.worker.paths import resolve


@dataclass(frozen=True, slots=True)
class Top:
    """What the client's path is: ``kind`` is file, dir, missing or error."""

    shown: str  # the path as clamd prints it (trailing slashes dropped)
    kind: str
    error: str = ""  # strerror text for missing/error
    verdict: Unchecked | None = None  # set when the path is refused outright
    real: str = ""  # where it resolved: a directory is listed there, not re-resolved


def display(path: str) -> str:
    """clamd prints ``/a/b/`` and ``/a/b//`` as ``/a/b``."""
    stripped = path.rstrip("/")
    return stripped if stripped or not path else "/"


def inspect(path: str, roots: tuple[str, ...]) -> Top:
    """Classify the client's path without opening it for reading. Never raises: a NUL,
    an undecodable or over-long name, a link loop or a race is an answer
    (:func:`scand.worker.paths.resolve`, which also gives a path outside the roots
    one answer whether it exists or not)."""
    shown = display(path)
    if not path:
        return Top(shown, "missing", error=os.strerror(errno.ENOENT))  # clamd: "" is ENOENT
    # The daemon has no meaningful working directory: a relative path is refused,
    # as the Sophie side does.
    found = resolve(path, roots)
    if isinstance(found, Unchecked):
        if found.reason == Reason.NOT_FOUND:
            return Top(shown, "missing", error=os.strerror(errno.ENOENT))
        return Top(shown, "refused", verdict=found)
    return Top(shown, "dir" if stat.S_ISDIR(found.st.st_mode) else "file", real=found.real)


def walk(top: str, roots: tuple[str, ...], max_files: int, max_depth: int, real: str = ""
         ) -> Iterator[tuple[str, Unchecked | None]]:
    """Yield ``(path, None)`` for each file to scan, or ``(path, Unchecked)`` for a problem.

    Paths are shown under ``top`` as the client wrote it; directories are listed where
    they resolved (``real`` for the top, :func:`resolve` below it), so a link swapped
    after the check cannot make the walk list another directory. After a
    too-many-files or too-deep finding nothing more is yielded. Iterative (a stack of
    directory listings), so no ``limits.max_depth`` can exhaust Python's stack.
    """
    seen: set[tuple[int, int]] = set()
    files = 0

    def listing(directory: str, depth: int) -> tuple[list[str], Unchecked | None, bool]:
        """(entry paths, a finding, whether the walk stops)."""
        if depth > max_depth:
            return [], Unchecked(Reason.TOO_DEEP, f"depth>{max_depth}"), True
        try:
            st = os.stat(directory)
            with os.scandir(directory) as it:
                entries = [e.path for e in it]
        except (OSError, ValueError) as exc:
            return [], _unchecked(exc, directory), False
        if (st.st_dev, st.st_ino) in seen:
            return [], None, False  # a symlink loop back into the tree: already covered
        seen.add((st.st_dev, st.st_ino))
        return entries, None, False

    stack: list[tuple[Iterator[str], str, int]] = []
    directory, depth = display(top), 0
    where = real or directory
    while True:
        names, problem, stop = listing(where, depth)
        if problem is not None:
            yield directory, problem
        if stop:
            return
        stack.append((iter(names), directory, depth))
        while stack:
            pending, parent, depth = stack[-1]
            access = next(pending, None)
            if access is None:
                stack.pop()
                continue
            path = os.path.join(parent, os.path.basename(access))
            found = resolve(access, roots)
            if isinstance(found, Unchecked):
                if found.reason == Reason.NOT_ALLOWED and found.detail == access:
                    found = Unchecked(Reason.NOT_ALLOWED, "outside allowed roots")
                yield path, found
                continue
            if stat.S_ISDIR(found.st.st_mode):
                directory, where, depth = path, found.real, depth + 1
                break  # list it now: a subdirectory is walked when it is met
            files += 1
            if files > max_files:
                yield path, Unchecked(Reason.TOO_MANY_FILES, f">{max_files}")
                return
            yield path, None
        else:
            return


def _unchecked(exc: OSError | ValueError, path: str) -> Unchecked:
    if isinstance(exc, FileNotFoundError):
        return Unchecked(Reason.NOT_FOUND, path)
    if isinstance(exc, OSError):
        return Unchecked(Reason.UNREADABLE, f"{path}: {exc.strerror}")
    return Unchecked(Reason.PROTOCOL, "bad path")


def list_tree(top: str, roots: tuple[str, ...], max_files: int, max_depth: int,
              real: str = "") -> list[tuple[str, Unchecked | None]]:
    """The whole walk as a list (for ``trio.to_thread.run_sync``)."""
    return list(walk(top, roots, max_files, max_depth, real))
