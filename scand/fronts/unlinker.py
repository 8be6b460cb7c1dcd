"""Removing Unix socket files at stop, after privileges were dropped.

A socket bound as root in a root-owned directory (``/run/sophie``) cannot be
unlinked by the daemon once it runs as ``server.user``. Chosen way: before
dropping privileges, the daemon starts a tiny helper (a fresh interpreter,
stdlib only, no scand code) that keeps root, ignores signals and only waits
for its stdin to reach end of file, which happens when the daemon stops or
dies, even by SIGKILL. It then removes each socket file it was given, but
only if the path is still a socket with the same device and inode as the one
bound (a newer daemon's socket is never removed). It reads nothing from the
daemon but EOF, so a compromised daemon cannot make it unlink anything else.

Without privileges to drop, the daemon unlinks its sockets itself.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import structlog

log = structlog.get_logger("scand.unlinker")

# The helper's whole program: argv is the list of "dev:ino:path" to remove at EOF.
HELPER = r"""
import os, signal, stat, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
    signal.signal(s, signal.SIG_IGN)
while os.read(0, 4096):
    pass
for item in sys.argv[1:]:
    dev, ino, path = item.split(":", 2)
    try:
        st = os.lstat(path)
        if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == (int(dev), int(ino)):
            os.unlink(path)
    except OSError:
        pass
"""


class SocketRemover:
    """Removes this daemon's socket files at stop, with a root helper when needed."""

    def __init__(self) -> None:
        self.paths: dict[str, tuple[int, int]] = {}
        self.helper: subprocess.Popen[bytes] | None = None

    def add(self, path: str) -> None:
        """Remember a socket file just bound (its device and inode)."""
        st = os.lstat(path)
        self.paths[path] = (st.st_dev, st.st_ino)

    def start_helper(self) -> None:
        """Start the root helper (call while still root, before dropping privileges)."""
        if not self.paths or self.helper is not None:
            return
        args = [f"{dev}:{ino}:{path}" for path, (dev, ino) in self.paths.items()]
        self.helper = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", HELPER, *args],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=True, start_new_session=True)

    def remove(self, path: str) -> None:
        """Unlink now if allowed; else the helper does it when the daemon ends."""
        ident = self.paths.get(path)
        try:
            st = os.lstat(path)
            if ident is not None and (st.st_dev, st.st_ino) != ident:
                return  # not ours any more
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if self.helper is None:
                log.error("socket_not_removed", path=path, error=exc.strerror)
            else:
                log.info("socket_removal_deferred", path=path, by="root helper")

    def close(self) -> None:
        """Let the helper remove what is left, and wait for it (briefly)."""
        helper, self.helper = self.helper, None
        if helper is None:
            return
        assert helper.stdin is not None
        helper.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            helper.wait(timeout=5)
