"""One worker's conversation with one clamd: an ``IDSESSION`` kept open across requests.

Runs in a worker (stdlib only, no trio). Per request it costs the worker one
``sendmsg`` and (nearly always) one ``recv``, and clamd no accept and no new
connection; a connection per request cost both sides a connect/accept, a
socket, clamd's poll-list update and a close.

* FILDES goes as one ``sendmsg``: ``nFILDES\\n``, the one dummy byte clamd eats
  after it, and the descriptor (``SCM_RIGHTS``) together; clamd sees the
  command complete in one read and scans the descriptor in place
  (``cl_scandesc``: no copy, no temp file for the message itself).
* Replies in a session are ``<id>: <reply>``; requests go one at a time, so
  the id must be the one just sent, or the session is dropped.
* A session is never trusted across a change: it is opened anew when it was
  made in another process (a fork), when the socket path now names another
  socket (the managed clamd's symlink moved: RELOAD, RSS switch, restart), when
  clamd closed or wrote to it while idle (clamd ends an idle session after its
  ReadTimeout with ``COMMAND READ TIMED OUT``), when it sat idle longer than
  :data:`IDLE_REUSE`, and
  after any error, timeout or ``ERROR`` reply.
* A send that fails on a reused session (clamd closed it at that moment) is
  retried once on a fresh connection: nothing reached clamd, so nothing was
  scanned twice. A failure after the request was sent is never retried: a
  dead clamd stays ``-1:engine-unavailable``.
"""

from __future__ import annotations

import array
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

T = TypeVar("T")

# Seconds idle after which a session is opened anew rather than reused: well below
# clamd's ReadTimeout (120 s by default; the managed clamd.conf keeps it), which ends
# idle sessions, so clamd does not close one just as a request goes out.
IDLE_REUSE = 10.0
FILDES = b"nFILDES\n\0"  # the command and the one byte clamd eats after it (clamd/server-th.c)
_ANCILLARY = (socket.SOL_SOCKET, socket.SCM_RIGHTS)


class Unreachable(ConnectionError):
    """No connection to this clamd: nothing was sent, another socket may work."""


class SessionTimeout(Exception):
    """The request's deadline passed."""


class Session:
    """An ``IDSESSION`` to one clamd address, opened on first use, one request at a time."""

    def __init__(self, address: str | tuple[str, int]) -> None:
        self.address = address
        self.unix = isinstance(address, str)
        self.family = socket.AF_UNIX if self.unix else (
            socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
        self.sock: socket.socket | None = None
        self._poll: select.poll | None = None
        self._node: tuple[int, int] = (0, 0)  # the socket file reached (dev, inode)
        self._pid = 0
        self._last = 0.0
        self._id = 0  # the last request id sent in this session
        self._resend: Callable[[socket.socket], object] | None = None
        self.deadline = 0.0
        self.timed_out = False
        self.opened = 0  # sessions opened (for tests and the bench)

    # -- one request ---------------------------------------------------------------

    def start(self, timeout: float) -> None:
        """Begin one request with ``timeout`` seconds in total."""
        self.deadline = time.monotonic() + timeout
        self.timed_out = False

    def send_fildes(self, fd: int) -> None:
        self._send(lambda s: _sendmsg_all(s, FILDES, fd))

    def send_command(self, command: str) -> None:
        """A one-line command (``SCAN <path>``) inside the session."""
        data = f"n{command}\n".encode()
        self._send(lambda s: s.sendall(data))

    def send_instream(self, data: bytes | memoryview, chunk_size: int) -> None:
        """INSTREAM with big chunks; if clamd stops reading (its size limit), its reply
        still says why: read it in :meth:`reply`."""
        view = memoryview(data)

        def stream(sock: socket.socket) -> None:
            sock.sendall(b"nINSTREAM\n")  # a failure here: clamd never took the request
            try:
                for start in range(0, len(view), chunk_size):
                    chunk = view[start:start + chunk_size]
                    self._timed(partial(sock.sendall, struct.pack("!L", len(chunk))))
                    self._timed(partial(sock.sendall, chunk))
                self._timed(partial(sock.sendall, b"\0\0\0\0"))
            except (BrokenPipeError, ConnectionResetError):
                pass  # clamd refused the stream: its reply is waiting

        self._send(stream)

    def reply(self) -> str:
        """clamd's reply to the request just sent, without the session id; "" if clamd
        closed without one. The session is dropped after anything but a clean answer.

        A reused session reset before a byte of reply came was closed by clamd with
        the request unread (a request clamd had read leaves nothing unread, so its
        close is a plain end of file): the request is sent once more, on a new one."""
        try:
            buf = self._read()
        except ConnectionResetError:
            resend, self._resend = self._resend, None
            if resend is None:
                raise
            self._send(resend, retry=False)
            buf = self._read()
        self._resend = None
        self._last = time.monotonic()
        line = buf.decode("utf-8", "replace").strip()
        head, sep, rest = line.partition(": ")
        if sep and head == str(self._id) and rest:
            if rest.endswith("ERROR") or buf.count(b"\n") > 1:
                self.close()  # clamd may end the session after an error: start clean
            return rest
        self.close()
        if sep and head.isdigit():  # another request's reply: never taken for this one's
            raise ConnectionError(f"clamd reply out of step ({head}, not {self._id})")
        return line  # "" at EOF, or a line clamd sends when it ends a session

    def _read(self) -> bytes:
        """Up to the reply's end of line (one recv, nearly always), or what came
        before EOF; the session is dropped on any error."""
        sock = self._sock()
        buf = b""
        try:
            while not buf.endswith(b"\n"):
                chunk = self._timed(lambda: sock.recv(4096))
                if not chunk:
                    break
                buf += chunk
        except BaseException:
            self.close()
            raise
        return buf

    def close(self) -> None:
        """Drop the session (no ``END``: clamd frees it when the socket closes)."""
        if self.sock is not None:
            self.sock.close()  # after a fork, only this process's copy of it
            self.sock = None
            self._poll = None

    # -- internals -----------------------------------------------------------------

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            self.timed_out = True
            raise SessionTimeout("clamd deadline")
        return left

    def _timed(self, op: Callable[[], T]) -> T:
        """Run one socket operation with only the time left of the deadline."""
        assert self.sock is not None
        self.sock.settimeout(self._left())
        try:
            return op()
        except TimeoutError:
            self.timed_out = True
            raise SessionTimeout("clamd deadline") from None

    def _send(self, send: Callable[[socket.socket], object], retry: bool = True) -> None:
        """Send a request on the session (opened or reopened as needed); a reused
        session that fails on send is reopened once and the request sent again."""
        reused = retry and self._usable()
        if not reused:
            self.close()
            self._open()
        try:
            try:
                self._timed(lambda: send(self._sock()))
            except (BrokenPipeError, ConnectionResetError):
                if not reused:
                    raise
                self.close()
                self._open()
                reused = False
                self._timed(lambda: send(self._sock()))
        except BaseException:
            self.close()
            raise
        self._id += 1
        self._resend = send if reused else None

    def _sock(self) -> socket.socket:
        assert self.sock is not None
        return self.sock

    def _usable(self) -> bool:
        """The open session may take the next request (see the module docstring)."""
        if self.sock is None:
            return False
        if (self._pid != os.getpid() or time.monotonic() - self._last > IDLE_REUSE
                or (self.unix and self._node != _node(self.address))):
            self.close()
            return False
        assert self._poll is not None
        if self._poll.poll(0):  # readable while idle: clamd closed it, or said why
            self.close()
            return False
        return True

    def _open(self) -> None:
        node = _node(self.address) if self.unix else (0, 0)  # before connect: see _usable
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            sock.settimeout(self._left())
            sock.connect(self.address)
        except TimeoutError:
            sock.close()
            self.timed_out = True
            raise SessionTimeout("clamd deadline") from None
        except SessionTimeout:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            raise Unreachable(f"cannot reach clamd at {self.address}: "
                              f"{exc.strerror or exc}") from exc
        self.sock, self._node, self._pid = sock, node, os.getpid()
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self._id = 0
        self.opened += 1
        try:
            self._timed(lambda: sock.sendall(b"nIDSESSION\n"))
        except BaseException:
            self.close()
            raise


def _node(path: object) -> tuple[int, int]:
    try:
        st = os.stat(path)  # type: ignore[arg-type]
    except OSError:
        return (0, 0)
    return (st.st_dev, st.st_ino)


def _sendmsg_all(sock: socket.socket, data: bytes, fd: int) -> None:
    """``data`` with ``fd`` riding on its first byte; the rest, if the kernel took
    only part (it does not for 9 bytes on an idle socket), with plain sends."""
    sent = sock.sendmsg([data], [(*_ANCILLARY, array.array("i", [fd]))])
    if sent < len(data):
        sock.sendall(data[sent:])
