"""One message as the milter receives it: headers, then body chunks, bounded in memory.

The message is rebuilt as RFC 5322 text (``Name: value`` CRLF lines, a blank
line, the body as the MTA sent it) for the same walker, policy and engine as
every other request. It stays in memory up to ``spill_bytes``; past that it
goes to a private file (mode 0600) in the spool directory, so the daemon never
holds many whole messages. Past ``max_bytes`` nothing more is kept and the
message is answered as too large (unchecked: a tempfail, never an accept).
A spool that cannot be written (full, quota, I/O error, removed) is the same:
nothing more is kept, ``error`` says why, and the message is a tempfail.

Spill files are ``msg-<daemon pid>-*.eml`` and private spool directories
``scand-milter-<daemon pid>-*``: at start, :func:`sweep_stale_spool` removes
those a killed daemon left behind (and nothing else).

No trio: writes go to the page cache of a local file and are short.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable

from scand import safedir

SPILL_PREFIX = "msg-"
SPILL_SUFFIX = ".eml"
TEMP_SPOOL_PREFIX = "scand-milter-"
# Names scand itself gives; the pid says whose they are (a live daemon's are kept).
_SPILL_NAME = re.compile(r"msg-(\d+)-[A-Za-z0-9_]+\.eml")
_TEMP_SPOOL_NAME = re.compile(r"scand-milter-(\d+)-[A-Za-z0-9_]+")


class MessageBuffer:
    """Bytes of one message, in memory or spilled to a spool file."""

    def __init__(self, spill_bytes: int, max_bytes: int, spool_dir: str) -> None:
        self.spill_bytes = spill_bytes
        self.max_bytes = max_bytes
        self.spool_dir = spool_dir
        self._mem = bytearray()
        self._fd: int | None = None
        self.path: str | None = None
        self.size = 0
        self.too_large = False
        self.in_body = False
        self.message_id = ""
        self.error = ""  # why the spool could not be written; then nothing is kept

    def header(self, name: str, value: str) -> None:
        if name.lower() == "message-id" and not self.message_id:
            self.message_id = value.strip()[:200]
        # Folded values arrive with bare LF (Postfix) or CRLF (Sendmail) between lines.
        value = value.replace("\r\n", "\n").replace("\n", "\r\n")
        sep = ":" if value.startswith((" ", "\t")) else ": "
        self._add(f"{name}{sep}{value}\r\n".encode("utf-8", "surrogateescape"))

    def body(self, data: bytes) -> None:
        if not self.in_body:
            self.in_body = True
            self._add(b"\r\n")
        if data:
            self._add(data)

    def finish(self) -> None:
        """End of message: a message with no body still gets its blank line."""
        self.body(b"")
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)  # a delayed write error (NFS, quota) shows here
            except OSError as exc:
                self._failed(exc)

    def _add(self, data: bytes) -> None:
        self.size += len(data)
        if self.too_large or self.error:
            return
        if self.size > self.max_bytes:
            self.too_large = True
            self._mem = bytearray()
            self.discard()
            return
        try:
            if self._fd is None and len(self._mem) + len(data) > self.spill_bytes:
                self._spill()
            if self._fd is not None:
                _write_all(self._fd, data)
            else:
                self._mem += data
        except OSError as exc:  # ENOSPC, EDQUOT, EIO, the spool directory removed...
            self._failed(exc)

    def _spill(self) -> None:
        fd, path = tempfile.mkstemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-",
                                    suffix=SPILL_SUFFIX, dir=self.spool_dir)
        self._fd, self.path = fd, path
        _write_all(fd, self._mem)
        self._mem = bytearray()

    def _failed(self, exc: OSError) -> None:
        """The spool cannot be written: keep nothing more; the message is a tempfail."""
        self.error = f"spool: {exc.strerror or exc}"
        self.discard()

    @property
    def spilled(self) -> bool:
        return self.path is not None

    def data(self) -> bytes:
        return bytes(self._mem)

    def discard(self) -> None:
        """Drop everything: close and remove the spool file, if any."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self.path = None
        self._mem = bytearray()


def _write_all(fd: int, data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _dead(pid: int) -> bool:
    """Whether the daemon that named a file is gone. Our own pid counts as gone:
    sweeping runs before this daemon spools anything, and a container restarts
    its daemon under the same pid."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, someone else's
    return False


def sweep_stale_spool(configured: str, owners: Iterable[int] = ()) -> list[str]:
    """Remove what a killed daemon left: spill files in the configured spool
    directory, and private spool directories in the temporary directory (only
    real directories owned by one of ``owners``, by default this process's user).
    Only names scand gives, only of daemons no longer running. The paths removed."""
    removed: list[str] = []
    if configured:
        for entry in _entries(configured):
            match = _SPILL_NAME.fullmatch(entry.name)
            if match and _dead(int(match.group(1))) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(entry.path)
    uids = set(owners) or {os.geteuid()}
    for entry in _entries(tempfile.gettempdir()):
        match = _TEMP_SPOOL_NAME.fullmatch(entry.name)
        if not match or not _dead(int(match.group(1))):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and st.st_uid in uids:
            shutil.rmtree(entry.path, ignore_errors=True)  # never follows a link inside
            removed.append(entry.path)
    return removed


def _entries(directory: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return list(it)
    except OSError:
        return []


def make_spool_dir(configured: str) -> tuple[str, bool]:
    """The spool directory (created 0700 if missing; an existing one only if it is
    scand's: :func:`scand.safedir.ensure_dir`, never chmod'ed) and whether scand made
    it temporary (then it is removed at exit)."""
    if configured:
        safedir.ensure_dir(configured, "milter.spool_dir")
        return configured, False
    return tempfile.mkdtemp(prefix=f"{TEMP_SPOOL_PREFIX}{os.getpid()}-"), True
