"""Minimal blocking clients for the load driver: scand (Sophie) and clamd, raw sockets.

Each target answers ``scan(path) -> reply`` with a Sophie-style reply line
(``0``, ``1:<name>``, ``-1:<reason>``), so both daemons are judged by the same
code. One target object per driver thread; not thread-safe.

* ``ScandTarget``: ``<path>\\n`` (transfer ``path``) or ``STREAM <n>\\n<bytes>``
  (transfer ``stream``).
* ``ClamdTarget``: ``SCAN <path>`` (transfer ``path``) or ``INSTREAM`` in 1 MiB
  chunks (transfer ``stream``, as scand's clamd engine sends them). A
  persistent connection is an ``IDSESSION``; otherwise one command per
  connection, as clamdscan does.

``persistent=False`` opens a connection per message, as Exim, MIMEDefang and
qpsmtpd do; ``True`` keeps one open, as amavisd and MailScanner do.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct

CHUNK = 1024 * 1024
RECV = 65536


class TargetError(Exception):
    """No verdict: connect failed, the peer closed, or the deadline passed."""


class _Conn:
    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = b""

    def open(self) -> socket.socket:
        if self.sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout)
            try:
                s.connect(self.path)
            except OSError as exc:
                s.close()
                raise TargetError(f"connect {self.path}: {exc}") from exc
            self.sock, self.buf = s, b""
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def read_until(self, term: bytes) -> bytes:
        assert self.sock is not None
        while True:
            i = self.buf.find(term)
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + 1 :]
                return out
            try:
                chunk = self.sock.recv(RECV)
            except OSError as exc:
                raise TargetError(f"recv: {exc}") from exc
            if not chunk:
                raise TargetError("peer closed without a reply")
            self.buf += chunk


class ScandTarget:
    def __init__(self, socket_path: str, transfer: str = "path", persistent: bool = True,
                 timeout: float = 120.0) -> None:
        self.conn = _Conn(socket_path, timeout)
        self.stream = transfer == "stream"
        self.persistent = persistent

    def scan(self, path: str) -> bytes:
        if self.stream:
            with open(path, "rb") as f:
                data = f.read()
            request = b"STREAM %d\n" % len(data) + data
        else:
            request = os.fsencode(path) + b"\n"
        sock = self.conn.open()
        try:
            sock.sendall(request)
            line = self.conn.read_until(b"\n")
        except (OSError, TargetError) as exc:
            self.conn.close()
            raise TargetError(str(exc)) from exc
        # After some -1 replies (too-large, protocol) the daemon closes: start afresh.
        if not self.persistent or line.startswith(b"-1"):
            self.conn.close()
        return line

    def close(self) -> None:
        self.conn.close()


def clamd_to_sophie(reply: bytes) -> bytes:
    """``<x>: OK`` / ``<x>: <Name> FOUND`` / ``... ERROR`` as ``0`` / ``1:<Name>`` / ``-1:``."""
    text = reply.rstrip(b"\0\n")
    if text.endswith(b": OK"):
        return b"0"
    if text.endswith(b" FOUND"):
        name = text[: -len(b" FOUND")].rsplit(b": ", 1)[-1]
        if name.startswith(b"Heuristics.Limits.Exceeded"):
            return b"-1:too-large " + name  # AlertExceedsMax: not scanned in full
        return b"1:" + name
    if text.endswith(b" ERROR"):
        detail = text[: -len(b" ERROR")].rsplit(b": ", 1)[-1].replace(b" ", b"-")
        if b"size limit" in text:
            return b"-1:too-large " + detail
        return b"-1:engine-error " + detail
    return b"-1:protocol " + text[:60].replace(b" ", b"-")


class ClamdTarget:
    def __init__(self, socket_path: str, transfer: str = "path", persistent: bool = True,
                 timeout: float = 120.0) -> None:
        self.conn = _Conn(socket_path, timeout)
        self.stream = transfer == "stream"
        self.persistent = persistent
        self.session = False

    def _request(self, path: str) -> list[bytes]:
        if not self.stream:
            return [b"zSCAN " + os.fsencode(path) + b"\0"]
        parts = [b"zINSTREAM\0"]
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                parts += [struct.pack(">I", len(chunk)), chunk]
        parts.append(struct.pack(">I", 0))
        return parts

    def scan(self, path: str) -> bytes:
        request = self._request(path)
        sock = self.conn.open()
        try:
            if self.persistent and not self.session:
                sock.sendall(b"zIDSESSION\0")
                self.session = True
            sock.sendall(b"".join(request))
            reply = self.conn.read_until(b"\0")
        except (OSError, TargetError) as exc:
            self.close()
            raise TargetError(str(exc)) from exc
        if self.session:
            reply = reply.split(b": ", 1)[1] if b": " in reply else reply  # "<id>: " prefix
        verdict = clamd_to_sophie(reply)
        if not self.persistent or verdict.startswith(b"-1"):
            self.close()
        return verdict

    def close(self) -> None:
        if self.session and self.conn.sock is not None:
            with contextlib.suppress(OSError):
                self.conn.sock.sendall(b"zEND\0")
        self.session = False
        self.conn.close()


def make_target(kind: str, socket_path: str, transfer: str, persistent: bool,
                timeout: float) -> ScandTarget | ClamdTarget:
    cls = ScandTarget if kind == "scand" else ClamdTarget
    return cls(socket_path, transfer, persistent, timeout)


def ask_line(socket_path: str, line: bytes, timeout: float = 10.0) -> bytes:
    """One control line on a fresh connection (PING, VERSION, STATS), reply without LF."""
    conn = _Conn(socket_path, timeout)
    try:
        conn.open().sendall(line)
        return conn.read_until(b"\n")
    finally:
        conn.close()


def peer_pid(socket_path: str) -> int | None:
    """The pid of the process listening on a Unix socket (SO_PEERCRED), or None."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5.0)
            s.connect(socket_path)
            creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, _, _ = struct.unpack("3i", creds)
    return pid or None
