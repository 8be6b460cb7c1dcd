"""One message as the milter receives it: headers, then body chunks, bounded in memory.

The message is rebuilt as RFC 5322 text (``Name: value`` CRLF lines, a blank
line, the body as the MTA sent it) for the same walker, policy and engine as
every other request. It stays in memory up to ``spill_bytes``; past that it
goes to a private file (mode 0600) in the spool directory, so the daemon never
holds many whole messages. Past ``max_bytes`` nothing more is kept and the
message is answered as too large (unchecked: a tempfail, never an accept).

No trio: writes go to the page cache of a local file and are short.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from scand import safedir


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
            os.close(self._fd)
            self._fd = None

    def _add(self, data: bytes) -> None:
        self.size += len(data)
        if self.too_large:
            return
        if self.size > self.max_bytes:
            self.too_large = True
            self._mem = bytearray()
            self.discard()
            return
        if self._fd is None and len(self._mem) + len(data) > self.spill_bytes:
            self._spill()
        if self._fd is not None:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        else:
            self._mem += data

    def _spill(self) -> None:
        fd, path = tempfile.mkstemp(prefix="msg-", suffix=".eml", dir=self.spool_dir)
        self._fd, self.path = fd, path
        view = memoryview(self._mem)
        while view:
            view = view[os.write(fd, view):]
        self._mem = bytearray()

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


def make_spool_dir(configured: str) -> tuple[str, bool]:
    """The spool directory (created 0700 if missing; an existing one only if it is
    scand's: :func:`scand.safedir.ensure_dir`, never chmod'ed) and whether scand made
    it temporary (then it is removed at exit)."""
    if configured:
        safedir.ensure_dir(configured, "milter.spool_dir")
        return configured, False
    return tempfile.mkdtemp(prefix="scand-milter-"), True
